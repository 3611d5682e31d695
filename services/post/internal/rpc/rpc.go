// Package rpc serves feed.v1.PostService: it converts between protobuf and
// domain types and maps domain errors to gRPC status codes.
package rpc

import (
	"context"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/feedpb"
	"github.com/herald-feed/herald/services/platform/rpcstatus"
	"github.com/herald-feed/herald/services/post/internal/posts"
)

// Server implements feedv1.PostServiceServer.
type Server struct {
	feedv1.UnimplementedPostServiceServer
	svc *posts.Service
}

// New returns a Server for svc.
func New(svc *posts.Service) *Server { return &Server{svc: svc} }

func (s *Server) CreatePost(ctx context.Context, req *feedv1.CreatePostRequest) (*feedv1.CreatePostResponse, error) {
	p, err := s.svc.Create(ctx, req.GetAuthorId(), req.GetText(), req.GetIdempotencyKey())
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.CreatePostResponse{Post: feedpb.Post(p)}, nil
}

func (s *Server) GetPost(ctx context.Context, req *feedv1.GetPostRequest) (*feedv1.GetPostResponse, error) {
	id, err := feed.ParsePostID(req.GetPostId())
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	p, err := s.svc.Get(ctx, id)
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.GetPostResponse{Post: feedpb.Post(p)}, nil
}

func (s *Server) DeletePost(ctx context.Context, req *feedv1.DeletePostRequest) (*feedv1.DeletePostResponse, error) {
	id, err := feed.ParsePostID(req.GetPostId())
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	if err := s.svc.Delete(ctx, id, req.GetAuthorId()); err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.DeletePostResponse{}, nil
}

func (s *Server) ListUserPosts(ctx context.Context, req *feedv1.ListUserPostsRequest) (*feedv1.ListUserPostsResponse, error) {
	ps, next, err := s.svc.List(ctx, req.GetAuthorId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.ListUserPostsResponse{Posts: feedpb.Posts(ps), NextPageToken: next}, nil
}
