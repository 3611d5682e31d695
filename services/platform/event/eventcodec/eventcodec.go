// Package eventcodec encodes Herald's events (package event) as the
// protobuf messages of proto/herald/event/v1, the wire form every event-log
// adapter uses, and decodes them back. Protobuf stops here: the domain
// packages see only the native types.
package eventcodec

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/herald-feed/herald/proto/herald/event/v1"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
)

// ErrUndecodable is wrapped by every Unmarshal error. It also wraps
// event.ErrPermanent: no retry decodes a bad message.
var ErrUndecodable = fmt.Errorf("undecodable event: %w", event.ErrPermanent)

// Marshal encodes ev.
func Marshal(ev event.Event) ([]byte, error) {
	var m proto.Message
	switch ev := ev.(type) {
	case event.PostCreated:
		m = &eventv1.PostCreated{PostId: uint64(ev.Post), AuthorId: ev.Author, CreateTime: timestamppb.New(ev.Created)}
	case event.PostDeleted:
		m = &eventv1.PostDeleted{PostId: uint64(ev.Post), AuthorId: ev.Author}
	case event.Followed:
		m = &eventv1.Followed{FollowerId: ev.Follower, FolloweeId: ev.Followee}
	case event.Unfollowed:
		m = &eventv1.Unfollowed{FollowerId: ev.Follower, FolloweeId: ev.Followee}
	case event.FanoutChunk:
		m = &eventv1.FanoutChunk{PostId: uint64(ev.Post), AuthorId: ev.Author, CreateTime: timestamppb.New(ev.Created), Index: ev.Index, FollowerIds: ev.Followers}
	default:
		return nil, fmt.Errorf("eventcodec: unknown event type %T", ev)
	}
	return proto.Marshal(m)
}

// Unmarshal decodes an event of kind from data. An unknown kind, bytes that
// do not parse, or an event that misses a field it cannot do without is an
// error wrapping ErrUndecodable.
func Unmarshal(kind event.Kind, data []byte) (event.Event, error) {
	ev, err := unmarshal(kind, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", kind, err, ErrUndecodable)
	}
	return ev, nil
}

var errMissing = errors.New("missing field")

func unmarshal(kind event.Kind, data []byte) (event.Event, error) {
	switch kind {
	case event.KindPostCreated:
		var m eventv1.PostCreated
		if err := proto.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if m.PostId == 0 || m.AuthorId == "" {
			return nil, fmt.Errorf("post_id and author_id: %w", errMissing)
		}
		return event.PostCreated{Post: feed.PostID(m.PostId), Author: m.AuthorId, Created: m.CreateTime.AsTime()}, nil
	case event.KindPostDeleted:
		var m eventv1.PostDeleted
		if err := proto.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if m.PostId == 0 || m.AuthorId == "" {
			return nil, fmt.Errorf("post_id and author_id: %w", errMissing)
		}
		return event.PostDeleted{Post: feed.PostID(m.PostId), Author: m.AuthorId}, nil
	case event.KindFollowed:
		var m eventv1.Followed
		if err := proto.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if m.FollowerId == "" || m.FolloweeId == "" {
			return nil, fmt.Errorf("follower_id and followee_id: %w", errMissing)
		}
		return event.Followed{Follower: m.FollowerId, Followee: m.FolloweeId}, nil
	case event.KindUnfollowed:
		var m eventv1.Unfollowed
		if err := proto.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if m.FollowerId == "" || m.FolloweeId == "" {
			return nil, fmt.Errorf("follower_id and followee_id: %w", errMissing)
		}
		return event.Unfollowed{Follower: m.FollowerId, Followee: m.FolloweeId}, nil
	case event.KindFanoutChunk:
		var m eventv1.FanoutChunk
		if err := proto.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if m.PostId == 0 || m.AuthorId == "" {
			return nil, fmt.Errorf("post_id and author_id: %w", errMissing)
		}
		return event.FanoutChunk{Post: feed.PostID(m.PostId), Author: m.AuthorId, Created: m.CreateTime.AsTime(), Index: m.Index, Followers: m.FollowerIds}, nil
	}
	return nil, fmt.Errorf("unknown kind")
}
