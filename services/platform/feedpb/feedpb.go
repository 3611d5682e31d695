// Package feedpb converts between domain posts and their feed.v1 wire form.
// It is the one conversion shared by the rpc layers of several services.
package feedpb

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/feed"
)

// Post converts a domain post to its wire form.
func Post(p feed.Post) *feedv1.Post {
	return &feedv1.Post{PostId: p.ID.String(), AuthorId: p.Author, Text: p.Text, CreateTime: timestamppb.New(p.Created)}
}

// Posts converts a slice of domain posts.
func Posts(ps []feed.Post) []*feedv1.Post {
	out := make([]*feedv1.Post, len(ps))
	for i, p := range ps {
		out[i] = Post(p)
	}
	return out
}
