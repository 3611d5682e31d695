// Package rpc serves feed.v1.TimelineService.
package rpc

import (
	"context"

	"google.golang.org/grpc/metadata"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/feedpb"
	"github.com/herald-feed/herald/services/platform/httpapi"
	"github.com/herald-feed/herald/services/platform/rpcstatus"
	"github.com/herald-feed/herald/services/timeline/internal/timeline"
)

// Server implements feedv1.TimelineServiceServer.
type Server struct {
	feedv1.UnimplementedTimelineServiceServer
	svc *timeline.Service
	hub *timeline.Hub
}

// New returns a Server for svc whose streams are fed by hub.
func New(svc *timeline.Service, hub *timeline.Hub) *Server { return &Server{svc: svc, hub: hub} }

func (s *Server) GetHomeTimeline(ctx context.Context, req *feedv1.GetHomeTimelineRequest) (*feedv1.GetHomeTimelineResponse, error) {
	ps, next, err := s.svc.Home(ctx, req.GetUserId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, rpcstatus.From(err)
	}
	return &feedv1.GetHomeTimelineResponse{Posts: feedpb.Posts(ps), NextPageToken: next}, nil
}

// StreamHomeTimeline serves one live stream. Service.Stream calls the send
// below on a goroutine of its own, and may return while that goroutine is
// blocked in Send on a client that reads nothing (HTTP/2 flow control):
// returning ends the stream, which makes gRPC fail the blocked Send, so
// the goroutine exits. grpc-go tolerates a Send racing the handler's
// return: once the stream is done, Send fails.
func (s *Server) StreamHomeTimeline(req *feedv1.StreamHomeTimelineRequest, stream feedv1.TimelineService_StreamHomeTimelineServer) error {
	// A failure shows at the first Send.
	// The header says the stream is admitted, before its first post: the
	// HTTP gateway answers 200 on it (package httpapi), where a refused
	// stream has no headers but its status.
	opened := func() { _ = stream.SendHeader(metadata.Pairs(httpapi.StreamOpenHeader, "open")) }
	err := s.svc.StreamOpened(stream.Context(), s.hub, req.GetUserId(), opened, func(p feed.Post) error {
		return stream.Send(&feedv1.StreamHomeTimelineResponse{Post: feedpb.Post(p)})
	})
	return rpcstatus.From(err)
}
