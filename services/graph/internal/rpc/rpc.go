// Package rpc serves feed.v1.GraphService.
package rpc

import (
	"context"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/graph/internal/graph"
	"github.com/herald-feed/herald/services/platform/rpcstatus"
)

// Server implements feedv1.GraphServiceServer.
type Server struct {
	feedv1.UnimplementedGraphServiceServer
	svc *graph.Service
}

// New returns a Server for svc.
func New(svc *graph.Service) *Server { return &Server{svc: svc} }

func (s *Server) Follow(ctx context.Context, req *feedv1.FollowRequest) (*feedv1.FollowResponse, error) {
	if err := s.svc.Follow(ctx, req.GetFollowerId(), req.GetFolloweeId()); err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.FollowResponse{}, nil
}

func (s *Server) Unfollow(ctx context.Context, req *feedv1.UnfollowRequest) (*feedv1.UnfollowResponse, error) {
	if err := s.svc.Unfollow(ctx, req.GetFollowerId(), req.GetFolloweeId()); err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.UnfollowResponse{}, nil
}

func (s *Server) ListFollowers(ctx context.Context, req *feedv1.ListFollowersRequest) (*feedv1.ListFollowersResponse, error) {
	ids, next, err := s.svc.Followers(ctx, req.GetUserId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.ListFollowersResponse{UserIds: ids, NextPageToken: next}, nil
}

func (s *Server) ListFollowing(ctx context.Context, req *feedv1.ListFollowingRequest) (*feedv1.ListFollowingResponse, error) {
	ids, next, err := s.svc.Following(ctx, req.GetUserId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.ListFollowingResponse{UserIds: ids, NextPageToken: next}, nil
}
