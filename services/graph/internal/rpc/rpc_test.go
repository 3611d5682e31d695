package rpc_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/graph/internal/graph"
	"github.com/herald-feed/herald/services/graph/internal/rpc"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/pebblestore"
)

type discard struct{}

func (discard) Publish(context.Context, event.Event) error { return nil }

// TestFollowPastLimit: the refusal reaches the client as
// FAILED_PRECONDITION, naming the limit and the flag that sets it.
func TestFollowPastLimit(t *testing.T) {
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := rpc.New(graph.New(db, discard{}, pagetoken.New([]byte("0123456789abcdef0123456789abcdef")), 2))
	ctx := context.Background()
	follow := func(followee string) error {
		_, err := s.Follow(ctx, &feedv1.FollowRequest{FollowerId: "alice", FolloweeId: followee})
		return err
	}
	for _, b := range []string{"b1", "b2", "b1"} {
		if err := follow(b); err != nil {
			t.Fatalf("Follow(alice, %s) under the limit = %v; want nil", b, err)
		}
	}
	err = follow("b3")
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "follower_id alice already follows 2 accounts, the limit (-max-following)") {
		t.Errorf("Follow(alice, b3) past a limit of 2 = %v %q; want FailedPrecondition naming the limit", st.Code(), st.Message())
	}
	if _, err := s.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: "alice", FolloweeId: "b1"}); err != nil {
		t.Fatalf("Unfollow(alice, b1) = %v; want nil", err)
	}
	if err := follow("b3"); err != nil {
		t.Errorf("Follow(alice, b3) after an Unfollow = %v; want nil", err)
	}
	resp, err := s.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: "alice"})
	if got := resp.GetUserIds(); err != nil || len(got) != 2 || got[0] != "b2" || got[1] != "b3" {
		t.Errorf("ListFollowing(alice) = %v, %v; want [b2 b3]", got, err)
	}
}
