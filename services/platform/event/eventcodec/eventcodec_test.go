package eventcodec

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/event"
)

var created = time.Date(2026, 12, 1, 9, 0, 0, 123e6, time.UTC)

var samples = []event.Event{
	event.PostCreated{Post: 7, Author: "alice", Created: created},
	event.PostDeleted{Post: 7, Author: "alice"},
	event.Followed{Follower: "bob", Followee: "alice"},
	event.Unfollowed{Follower: "bob", Followee: "alice"},
	event.FanoutChunk{Post: 7, Author: "alice", Created: created, Index: 2, Followers: []string{"bob", "carol"}},
}

func TestRoundTrip(t *testing.T) {
	for _, ev := range samples {
		data, err := Marshal(ev)
		if err != nil {
			t.Fatalf("Marshal(%#v): %v", ev, err)
		}
		got, err := Unmarshal(ev.Kind(), data)
		if err != nil || !reflect.DeepEqual(got, ev) {
			t.Errorf("Unmarshal(Marshal(%#v)) = %#v, %v; want the event back", ev, got, err)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	followed, _ := Marshal(event.Followed{Follower: "bob", Followee: "alice"})
	for _, tc := range []struct {
		name string
		kind event.Kind
		data []byte
	}{
		{"garbage", event.KindPostCreated, []byte{0xff, 0xff, 0xff}},
		{"unknown kind", event.Kind("post.edited"), followed},
		{"missing fields", event.KindPostCreated, nil},
		{"empty follow", event.KindFollowed, nil},
	} {
		ev, err := Unmarshal(tc.kind, tc.data)
		if !errors.Is(err, ErrUndecodable) || !errors.Is(err, event.ErrPermanent) {
			t.Errorf("%s: Unmarshal = %#v, %v; want an error wrapping ErrUndecodable and event.ErrPermanent", tc.name, ev, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, ev := range samples {
		data, _ := Marshal(ev)
		f.Add(string(ev.Kind()), data)
	}
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		ev, err := Unmarshal(event.Kind(kind), data)
		if err != nil {
			if !errors.Is(err, event.ErrPermanent) {
				t.Fatalf("Unmarshal error %v does not wrap event.ErrPermanent", err)
			}
			return
		}
		// A decoded event encodes and decodes to itself.
		again, err := Marshal(ev)
		if err != nil {
			t.Fatalf("Marshal(%#v): %v", ev, err)
		}
		back, err := Unmarshal(ev.Kind(), again)
		if err != nil || !reflect.DeepEqual(normalize(back), normalize(ev)) {
			t.Fatalf("round trip of %#v = %#v, %v", ev, back, err)
		}
	})
}

// normalize makes an empty follower list and a nil one equal.
func normalize(ev event.Event) event.Event {
	if c, ok := ev.(event.FanoutChunk); ok && len(c.Followers) == 0 {
		c.Followers = nil
		return c
	}
	return ev
}
