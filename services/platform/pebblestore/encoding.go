package pebblestore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
)

// idKey is <table>/<id>. Big-endian, so byte order is ID order.
func idKey(table byte, id feed.PostID) []byte {
	return binary.BigEndian.AppendUint64([]byte{table, '/'}, uint64(id))
}

// userPrefix is <table>/<user>\x00, the prefix of every key for user.
func userPrefix(table byte, user string) []byte {
	k := make([]byte, 0, 2+len(user)+1+8)
	k = append(k, table, '/')
	k = append(k, user...)
	return append(k, 0)
}

func userKey(table byte, user, rest string) []byte {
	return append(userPrefix(table, user), rest...)
}

// authorKey stores ^id so that a forward scan is newest first.
func authorKey(author string, id feed.PostID) []byte {
	return binary.BigEndian.AppendUint64(userPrefix(prefixAuthor, author), ^uint64(id))
}

func countKey(user string) []byte {
	return append([]byte{prefixCount, '/'}, user...)
}

func followingCountKey(user string) []byte {
	return append([]byte{prefixFollowingCount, '/'}, user...)
}

// prefixEnd returns the smallest key above every key that starts with
// prefix. Every prefix here ends in '/' or \x00, so the last byte never
// overflows.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	end[len(end)-1]++
	return end
}

// Post record: version, flags, created (unix nanos), author length
// (uvarint), author, text. The ID is in the key.
const (
	postVersion = 1
	flagDeleted = 1 << 0
)

var errCorrupt = errors.New("corrupt record")

func encodePost(p feed.Post, deleted bool) []byte {
	var flags byte
	if deleted {
		flags |= flagDeleted
	}
	b := make([]byte, 0, 2+8+binary.MaxVarintLen64+len(p.Author)+len(p.Text))
	b = append(b, postVersion, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Created.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(p.Author)))
	b = append(b, p.Author...)
	return append(b, p.Text...)
}

func decodePost(id feed.PostID, b []byte) (p feed.Post, deleted bool, err error) {
	if len(b) < 10 || b[0] != postVersion {
		return p, false, errCorrupt
	}
	deleted = b[1]&flagDeleted != 0
	created := int64(binary.BigEndian.Uint64(b[2:10]))
	b = b[10:]
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return p, false, errCorrupt
	}
	b = b[w:]
	return feed.Post{
		ID:      id,
		Author:  string(b[:n]),
		Text:    string(b[n:]),
		Created: time.Unix(0, created).UTC(),
	}, deleted, nil
}

// Idempotency record: post ID and the wall time it was written, for the TTL.
func encodeIdem(id feed.PostID, written time.Time) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(id))
	return binary.BigEndian.AppendUint64(b, uint64(written.UnixNano()))
}

func decodeIdem(b []byte) (feed.PostID, time.Time, error) {
	if len(b) != 16 {
		return 0, time.Time{}, errCorrupt
	}
	return feed.PostID(binary.BigEndian.Uint64(b)), time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))), nil
}
