// Package feed holds the domain types that every Herald service shares:
// posts, user IDs, their validation, and the sentinel errors that the rpc
// layers map to gRPC status codes.
package feed

import (
	"strconv"
	"time"
)

// PostID is a 64-bit, time-sortable post ID. A larger ID is a newer post,
// so ordering a timeline by ID orders it by time.
type PostID uint64

// String returns the decimal form used on the wire.
func (id PostID) String() string { return strconv.FormatUint(uint64(id), 10) }

// ParsePostID parses the decimal form of a post ID.
func ParsePostID(s string) (PostID, error) {
	if s == "" || len(s) > 20 || s[0] < '1' || s[0] > '9' {
		return 0, Invalid("post_id", "must be a decimal 64-bit post ID")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, Invalid("post_id", "must be a decimal 64-bit post ID")
	}
	return PostID(n), nil
}

// Post is one stored post.
type Post struct {
	ID      PostID
	Author  string
	Text    string
	Created time.Time
	// Deleted marks a tombstone. Stores never return deleted posts; a post
	// cache keeps tombstones so that a racing refill cannot bring a deleted
	// post back.
	Deleted bool
}

// Limits on user input.
const (
	MaxTextRunes      = 500
	MaxUserIDLen      = 64
	MaxIdempotencyKey = 128
	DefaultPageSize   = 20
	MaxPageSize       = 100
	MaxGraphPageSize  = 1000
)

// DefaultMaxFollowing is how many accounts one user may follow unless the
// graph service's -max-following says otherwise: Twitter's long-standing
// 5,000.
const DefaultMaxFollowing = 5000

// PageSize turns a requested page size into the one to use: 0 means def,
// anything above max is coerced to max, and a negative size is invalid.
func PageSize(n int32, def, max int) (int, error) {
	switch {
	case n < 0:
		return 0, Invalid("page_size", "must not be negative")
	case n == 0:
		return def, nil
	case int(n) > max:
		return max, nil
	}
	return int(n), nil
}
