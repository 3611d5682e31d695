package feed

import (
	"errors"
	"fmt"
	"strings"
	"testing"
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
	const flagEngland = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"
	tests := []struct {
		name, text string
		reason     string // a word of the InvalidError's reason; empty: accepted
	}{
		{"word", "hello", ""},
		{"two lines", "line one\nline two", ""},
		{"500 two-byte characters", strings.Repeat("é", 500), ""},
		{"e with a combining acute", "cafe\u0301", ""},
		{"mark before its base", "\u0301a", ""},
		{"emoji ZWJ sequence", "\U0001F468\u200d\U0001F469\u200d\U0001F467", ""},
		{"flag tag sequence", flagEngland, ""},
		{"emoji variation selector", "\u2764\ufe0f", ""},
		{"Hebrew with RLM", "\u05e9\u05dc\u05d5\u05dd\u200f!", ""},
		{"Arabic with ALM", "\u061c\u0645\u0631\u062d\u0628\u0627 123", ""},
		{"LRM between scripts", "abc\u200e \u05d0", ""},
		{"zero-width space between letters", "a\u200bb", ""},
		{"Hangul filler beside Hangul", "\u3164\ud55c", ""},
		{"conjoining jamo", "\u1100\u1161", ""},
		{"Arabic end of ayah", "\u06dd", ""},
		{"Arabic number sign", "\u0600\u0661", ""},
		{"no-break space and a letter", "\u00a0x", ""},

		{"empty", "", "empty"},
		{"white space only", "   \n\t ", "empty"},
		{"501 characters", strings.Repeat("a", 501), "500"},
		{"501 zero-width spaces", strings.Repeat("\u200b", 501), "500"},
		{"bell", "bell\a", "control"},
		{"tab", "tab\tinside", "control"},
		{"NUL", "nul\x00", "control"},
		{"invalid UTF-8", "bad \xff utf8", "UTF-8"},
		{"DEL", "del\x7f", "control"},
		{"C1 control", "c1 \u0085", "control"},

		{"zero-width space", "\u200b", "visible"},
		{"500 zero-width spaces", strings.Repeat("\u200b", 500), "visible"},
		{"byte order mark", "\ufeff", "visible"},
		{"braille blank", "\u2800\u2800", "visible"},
		{"musical null notehead", "\U0001D159", "visible"},
		{"Hangul filler", "\u3164", "visible"},
		{"Hangul choseong filler", "\u115f", "visible"},
		{"Hangul jungseong filler", "\u1160", "visible"},
		{"halfwidth Hangul filler", "\uffa0", "visible"},
		{"soft hyphen", "\u00ad", "visible"},
		{"tag characters", "\U000E0001\U000E0041\U000E007F", "visible"},
		{"unassigned tag-block code point", "\U000E0000", "visible"},
		{"variation selector", "\ufe0f", "visible"},
		{"supplementary variation selector", "\U000E0100", "visible"},
		{"Mongolian variation selector", "\u180b", "visible"},
		{"zero-width joiner", "\u200d\u200d", "visible"},
		{"zero-width non-joiner", "\u200c", "visible"},
		{"word joiner", "\u2060", "visible"},
		{"combining grapheme joiner", "\u034f", "visible"},
		{"combining marks only", "\u0301\u0301", "visible"},
		{"enclosing mark only", "\u20dd", "visible"},
		{"RLM only", "\u200f", "visible"},
		{"ALM only", "\u061c", "visible"},
		{"mixed invisibles and white space", " \u200b \n\u3164\u00a0\u0301\u2800", "visible"},
		{"emoji joiners without emoji", "\u200d\ufe0f\U000E007F", "visible"},

		{"RLO in a link", "see https://example.com/\u202egpj.exe", "bidirectional"},
		{"RLO alone", "\u202e", "bidirectional"},
		{"RLO among invisibles", "\u200b\u202e", "bidirectional"},
	}
	// Every embedding, override and isolate control, in visible text.
	for _, r := range []rune{0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069} {
		tests = append(tests, struct{ name, text, reason string }{fmt.Sprintf("%U", r), "abc" + string(r) + "def", "bidirectional"})
	}
	for _, tt := range tests {
		err := ValidateText(tt.text)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("%s: ValidateText(%+q) = %v; want nil", tt.name, tt.text, err)
			}
			continue
		}
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "text" || !strings.Contains(inv.Reason, tt.reason) {
			t.Errorf("%s: ValidateText(%+q) = %v; want an InvalidError for text whose reason mentions %q", tt.name, tt.text, err, tt.reason)
		}
	}
}

func TestValidateIdempotencyKey(t *testing.T) {
	var printable []byte
	for c := byte('!'); c <= '~'; c++ {
		printable = append(printable, c)
	}
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"none", "", true},
		{"counter", "key-1", true},
		{"UUID", "550e8400-e29b-41d4-a716-446655440000", true},
		{"every printable character", string(printable), true},
		{"128 characters", strings.Repeat("k", 128), true},

		{"129 characters", strings.Repeat("k", 129), false},
		{"space inside", "key 1", false},
		{"leading space", " key", false},
		{"trailing space", "key ", false},
		{"only a space", " ", false},
		{"tab", "key\t1", false},
		{"newline", "key\n", false},
		{"NUL", "k\x00", false},
		{"DEL", "k\x7f", false},
		{"Cyrillic", "\u043a\u043b\u044e\u0447", false},
		{"Latin-1 letter", "cl\u00e9", false},
		{"zero-width space", "key\u200b", false},
		{"no-break space", "key\u00a01", false},
		{"invalid UTF-8", "k\xff", false},
	}
	for _, tt := range tests {
		err := ValidateIdempotencyKey(tt.key)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: ValidateIdempotencyKey(%+q) = %v; want nil", tt.name, tt.key, err)
			}
			continue
		}
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "idempotency_key" {
			t.Errorf("%s: ValidateIdempotencyKey(%+q) = %v; want an InvalidError for idempotency_key", tt.name, tt.key, err)
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
		{Hybrid, DefaultCelebrityThreshold - 1, false}, {Hybrid, DefaultCelebrityThreshold, true}, {Hybrid, 0, false},
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
