// Package graphclient reads the social graph through feed.v1.GraphService,
// for the services (fan-out, timeline) that need followers or following
// lists but do not own the graph.
package graphclient

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/rpcstatus"
)

// callTimeout bounds each call, so that a caller without its own deadline
// is not held forever by WaitForReady while no graph instance is up.
const callTimeout = 5 * time.Second

// Client pages through graph lists.
type Client struct {
	c feedv1.GraphServiceClient
}

// New returns a Client over conn, which is normally discovery.Dial(…, "graph").
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{c: feedv1.NewGraphServiceClient(conn)}
}

// EachFollowerPage calls fn with each page of user's followers, pageSize
// at a time (at most feed.MaxGraphPageSize), until the list ends or fn
// fails.
func (c *Client) EachFollowerPage(ctx context.Context, user string, pageSize int, fn func([]string) error) error {
	return eachPage(ctx, func(ctx context.Context, token string) ([]string, string, error) {
		resp, err := c.c.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: int32(pageSize), PageToken: token}, grpc.WaitForReady(true))
		return resp.GetUserIds(), resp.GetNextPageToken(), err
	}, fn)
}

// Following returns up to max accounts that user follows.
func (c *Client) Following(ctx context.Context, user string, max int) ([]string, error) {
	var out []string
	errEnough := errors.New("enough")
	err := eachPage(ctx, func(ctx context.Context, token string) ([]string, string, error) {
		resp, err := c.c.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: user, PageSize: feed.MaxGraphPageSize, PageToken: token}, grpc.WaitForReady(true))
		return resp.GetUserIds(), resp.GetNextPageToken(), err
	}, func(ids []string) error {
		out = append(out, ids...)
		if len(out) >= max {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// eachPage is the paging loop of both lists: it calls page with each
// token, each call under callTimeout, and fn with each non-empty page,
// until the last page or an error.
func eachPage(ctx context.Context, page func(ctx context.Context, token string) ([]string, string, error), fn func([]string) error) error {
	token := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		ids, next, err := page(cctx, token)
		cancel()
		if err != nil {
			return rpcstatus.Unwrap("graph", err)
		}
		if len(ids) > 0 {
			if err := fn(ids); err != nil {
				return err
			}
		}
		if token = next; token == "" {
			return nil
		}
	}
}
