package pagetoken

import (
	"bytes"
	"encoding/base64"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestRoundTrip(t *testing.T) {
	k := New(testKey)
	for _, c := range []Cursor{
		{Last: 1},
		{Last: 1<<63 + 12345},
		{State: []byte("cassandra paging state")},
		{Last: 99, State: bytes.Repeat([]byte{0xff}, MaxStateLen)},
	} {
		tok := k.Encode("home:alice", c)
		got, err := k.Decode("home:alice", tok)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)) error: %v", c, err)
		}
		if got.Last != c.Last || !bytes.Equal(got.State, c.State) {
			t.Errorf("Decode(Encode(%+v)) = %+v; want the same cursor", c, got)
		}
	}
}

func TestRejects(t *testing.T) {
	k := New(testKey)
	good := k.Encode("home:alice", Cursor{Last: 42})
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flipped := append([]byte(nil), raw...)
	flipped[1] ^= 1
	tests := []struct {
		name, scope, token string
	}{
		{"empty", "home:alice", ""},
		{"not base64", "home:alice", "!!!"},
		{"too short", "home:alice", base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3})},
		{"flipped bit", "home:alice", base64.RawURLEncoding.EncodeToString(flipped)},
		{"truncated", "home:alice", good[:len(good)-2]},
		{"other user", "home:bob", good},
		{"other list", "posts:alice", good},
		{"other key", "home:alice", New([]byte("another key of at least 32 bytes")).Encode("home:alice", Cursor{Last: 42})},
	}
	for _, tt := range tests {
		if c, err := k.Decode(tt.scope, tt.token); err == nil {
			t.Errorf("%s: Decode(%q, %q) = %+v, nil; want ErrInvalid", tt.name, tt.scope, tt.token, c)
		}
	}
}

func FuzzDecode(f *testing.F) {
	k := New(testKey)
	f.Add(k.Encode("s", Cursor{Last: 7}))
	f.Add(k.Encode("s", Cursor{Last: 7, State: []byte("xyz")}))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := k.Decode("s", token)
		if err != nil {
			return
		}
		// Anything that decodes must re-encode to a token that decodes to
		// the same cursor.
		again, err := k.Decode("s", k.Encode("s", c))
		if err != nil || again.Last != c.Last || !bytes.Equal(again.State, c.State) {
			t.Fatalf("round trip of %+v gave %+v, %v", c, again, err)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	k := New(testKey)
	for b.Loop() {
		k.Encode("home:alice", Cursor{Last: 1 << 60})
	}
}

func BenchmarkDecode(b *testing.B) {
	k := New(testKey)
	tok := k.Encode("home:alice", Cursor{Last: 1 << 60})
	for b.Loop() {
		if _, err := k.Decode("home:alice", tok); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseRequest(t *testing.T) {
	c := New([]byte("0123456789abcdef0123456789abcdef"))
	tok := c.Encode("home:alice", Cursor{Last: 99})
	for _, tc := range []struct {
		size    int32
		token   string
		scope   string
		want    Request
		invalid bool
	}{
		{0, "", "home:alice", Request{Size: 20}, false},
		{7, "", "home:alice", Request{Size: 7}, false},
		{1000, "", "home:alice", Request{Size: 100}, false},
		{-1, "", "home:alice", Request{}, true},
		{5, tok, "home:alice", Request{Size: 5, Cursor: Cursor{Last: 99}}, false},
		{5, tok, "home:bob", Request{}, true},
		{5, tok + "x", "home:alice", Request{}, true},
	} {
		got, err := c.ParseRequest(tc.scope, tc.size, 100, tc.token)
		if (err != nil) != tc.invalid || got.Size != tc.want.Size || got.Cursor.Last != tc.want.Cursor.Last {
			t.Errorf("ParseRequest(%q, %d, 100, %q) = %+v, %v; want %+v, error %v", tc.scope, tc.size, tc.token, got, err, tc.want, tc.invalid)
		}
	}
}
