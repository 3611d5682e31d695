package feed

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateUserID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"alice", true},
		{"user_42", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"Alice", false},
		{"al ice", false},
		{"al-ice", false},
		{"ålice", false},
	}
	for _, tt := range tests {
		err := ValidateUserID("author_id", tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateUserID(%q) = %v; want ok=%v", tt.id, err, tt.ok)
		}
		var inv *InvalidError
		if err != nil && (!errors.As(err, &inv) || inv.Field != "author_id") {
			t.Errorf("ValidateUserID(%q) = %v; want an InvalidError naming author_id", tt.id, err)
		}
	}
}

func TestValidateText(t *testing.T) {
	tests := []struct {
		text string
		ok   bool
	}{
		{"hello", true},
		{"line one\nline two", true},
		{strings.Repeat("é", 500), true},
		{"", false},
		{"   \n\t ", false},
		{strings.Repeat("a", 501), false},
		{"bell\a", false},
		{"tab\tinside", false},
		{"nul\x00", false},
		{"bad \xff utf8", false},
		{"del\x7f", false},
		{"c1 \u0085", false},
	}
	for _, tt := range tests {
		err := ValidateText(tt.text)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateText(%q) = %v; want ok=%v", tt.text, err, tt.ok)
		}
	}
}

func TestPageSize(t *testing.T) {
	tests := []struct {
		in   int32
		want int
		ok   bool
	}{
		{0, 20, true}, {1, 1, true}, {100, 100, true}, {101, 100, true}, {1 << 30, 100, true}, {-1, 0, false},
	}
	for _, tt := range tests {
		got, err := PageSize(tt.in, DefaultPageSize, MaxPageSize)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("PageSize(%d) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParsePostID(t *testing.T) {
	for _, s := range []string{"", "0", "007", "-1", "+1", "abc", "18446744073709551616", "1 "} {
		if id, err := ParsePostID(s); err == nil {
			t.Errorf("ParsePostID(%q) = %d; want an error", s, id)
		}
	}
	if id, err := ParsePostID("18446744073709551615"); err != nil || id != 1<<64-1 {
		t.Errorf("ParsePostID(max) = %d, %v", id, err)
	}
}

func FuzzValidateText(f *testing.F) {
	for _, s := range []string{"hello", "", " ", "a\nb", "\xff", strings.Repeat("x", 501)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateText(s) != nil {
			return
		}
		// Whatever passes must meet every rule.
		if !utf8.ValidString(s) || strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > MaxTextRunes {
			t.Fatalf("ValidateText(%q) accepted bad text", s)
		}
		for _, r := range s {
			if r < 0x20 && r != '\n' || r == 0x7f {
				t.Fatalf("ValidateText(%q) accepted control character %U", s, r)
			}
		}
	})
}

func FuzzValidateUserID(f *testing.F) {
	f.Add("alice")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateUserID("user_id", s) != nil {
			return
		}
		if s == "" || len(s) > MaxUserIDLen || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Fatalf("ValidateUserID(%q) accepted a bad ID", s)
		}
	})
}

func FuzzParsePostID(f *testing.F) {
	f.Add("123")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParsePostID(s)
		if err == nil && id.String() != s {
			t.Fatalf("ParsePostID(%q) = %d, which prints as %q", s, id, id.String())
		}
	})
}

func TestStrategyPulled(t *testing.T) {
	tests := []struct {
		s         Strategy
		followers int64
		want      bool
	}{
		{Push, 1 << 40, false}, {Pull, 0, true},
		{Hybrid, 9_999, false}, {Hybrid, 10_000, true}, {Hybrid, 0, false},
	}
	for _, tt := range tests {
		if got := tt.s.Pulled(tt.followers, DefaultCelebrityThreshold); got != tt.want {
			t.Errorf("%s.Pulled(%d) = %v; want %v", tt.s, tt.followers, got, tt.want)
		}
	}
	for _, s := range []string{"push", "pull", "hybrid"} {
		if st, err := ParseStrategy(s); err != nil || string(st) != s {
			t.Errorf("ParseStrategy(%q) = %q, %v", s, st, err)
		}
	}
	if _, err := ParseStrategy("broadcast"); err == nil {
		t.Error(`ParseStrategy("broadcast") succeeded; want an error`)
	}
}
