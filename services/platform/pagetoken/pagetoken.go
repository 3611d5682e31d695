// Package pagetoken encodes page cursors into opaque, tamper-evident page
// tokens. A token carries the last post ID of a page (or a store's own
// paging state) and an HMAC-SHA256 tag over the cursor and the token's
// scope, so a token edited by a client, or replayed against another user or
// another list, fails to decode.
package pagetoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// Cursor is where the next page starts.
type Cursor struct {
	// Last is the post ID the previous page ended at; the next page holds
	// strictly smaller IDs.
	Last uint64
	// State is a store's own opaque paging state, such as Cassandra's, or
	// the last key of a page of user IDs.
	State []byte
}

// ErrInvalid means a token was malformed, tampered with, or issued for a
// different scope.
var ErrInvalid = errors.New("malformed or tampered page token")

const (
	version = 1
	tagLen  = 16
	// MaxStateLen bounds the paging state a token may carry.
	MaxStateLen = 1024
	maxTokenLen = 2048
)

// Codec signs and checks tokens with one secret key. Every instance of a
// service must share the key, so that a token issued by one instance is
// accepted by the next.
type Codec struct {
	key []byte
}

// New returns a Codec keyed with key, which should be at least 32 random
// bytes.
func New(key []byte) *Codec {
	return &Codec{key: append([]byte(nil), key...)}
}

// Encode returns the token for c in scope. scope names the list the token
// pages through, for example "home:alice".
func (k *Codec) Encode(scope string, c Cursor) string {
	if len(c.State) > MaxStateLen {
		panic("pagetoken: paging state too long")
	}
	buf := make([]byte, 0, 1+binary.MaxVarintLen64*2+len(c.State)+tagLen)
	buf = append(buf, version)
	buf = binary.AppendUvarint(buf, c.Last)
	buf = binary.AppendUvarint(buf, uint64(len(c.State)))
	buf = append(buf, c.State...)
	buf = append(buf, k.tag(scope, buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// Decode checks token against scope and returns its cursor.
func (k *Codec) Decode(scope, token string) (Cursor, error) {
	if len(token) > maxTokenLen {
		return Cursor{}, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 1+tagLen {
		return Cursor{}, ErrInvalid
	}
	body, tag := raw[:len(raw)-tagLen], raw[len(raw)-tagLen:]
	if !hmac.Equal(tag, k.tag(scope, body)) {
		return Cursor{}, ErrInvalid
	}
	if body[0] != version {
		return Cursor{}, ErrInvalid
	}
	rest := body[1:]
	last, n := binary.Uvarint(rest)
	if n <= 0 {
		return Cursor{}, ErrInvalid
	}
	rest = rest[n:]
	size, n := binary.Uvarint(rest)
	if n <= 0 || size > MaxStateLen || uint64(len(rest[n:])) != size {
		return Cursor{}, ErrInvalid
	}
	c := Cursor{Last: last}
	if size > 0 {
		c.State = append([]byte(nil), rest[n:]...)
	}
	return c, nil
}

func (k *Codec) tag(scope string, body []byte) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)[:tagLen]
}
