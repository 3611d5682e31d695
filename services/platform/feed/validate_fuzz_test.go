package feed

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The fuzz targets check the validators against the rules as their doc
// comments state them, written out again here rune by rune and byte by
// byte: whatever a validator accepts must meet every rule, whatever it
// refuses must break one, and a refusal is always an *InvalidError naming
// the field.

// textRule reports whether s meets ValidateText's documented rules.
func textRule(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	if n := utf8.RuneCountInString(s); n < 1 || n > MaxTextRunes {
		return false
	}
	shows := false
	for _, r := range s {
		if r != '\n' && unicode.Is(unicode.Cc, r) {
			return false
		}
		if unicode.Is(unicode.Bidi_Control, r) && r != 0x061c && r != 0x200e && r != 0x200f {
			return false
		}
		if drawsSomething(r) {
			shows = true
		}
	}
	return shows
}

// drawsSomething reports whether r counts as visible: not white space, not
// default-ignorable (format characters other than the prepended
// concatenation marks, the other ignorable code points, variation
// selectors), not a nonspacing or enclosing mark, and not one of the two
// blank symbols.
func drawsSomething(r rune) bool {
	switch {
	case unicode.Is(unicode.White_Space, r):
		return false
	case unicode.Is(unicode.Prepended_Concatenation_Mark, r):
		return true
	case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r),
		unicode.Is(unicode.Variation_Selector, r), unicode.Is(unicode.Mn, r), unicode.Is(unicode.Me, r):
		return false
	}
	return r != 0x2800 && r != 0x1d159
}

func FuzzValidateText(f *testing.F) {
	for _, s := range []string{
		"hello", "", " ", "a\nb", "\xff", strings.Repeat("x", 501), "tab\t", "\u0085",
		"\u200b", "\ufeff", "\u2800", "\u3164", "\u115f\u1160\uffa0", "\u00ad", "\U000E0041\U000E007F",
		"\ufe0f", "\u200d", "\u0301\u0301", "e\u0301", "\u20dd", "\U0001D159", "\u06dd",
		"\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F",
		"\u05e9\u05dc\u05d5\u05dd\u200f", "\u061c\u0645", "abc\u202edef", "\u2066x\u2069", "\u200e", strings.Repeat("\u200b", 500),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateText(s)
		if want := textRule(s); (err == nil) != want {
			t.Fatalf("ValidateText(%+q) = %v; the rules say valid=%v", s, err, want)
		}
		var inv *InvalidError
		if err != nil && (!errors.As(err, &inv) || inv.Field != "text") {
			t.Fatalf("ValidateText(%+q) = %v; want an InvalidError naming text", s, err)
		}
	})
}

func FuzzValidateIdempotencyKey(f *testing.F) {
	for _, s := range []string{"", "key-1", " ", "key 1", "k\x00", "k\x7f", "\xff", "\u043a", strings.Repeat("k", 128), strings.Repeat("k", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateIdempotencyKey(key)
		want := len(key) <= MaxIdempotencyKey
		for i := 0; i < len(key); i++ {
			want = want && key[i] >= 0x21 && key[i] <= 0x7e
		}
		if (err == nil) != want {
			t.Fatalf("ValidateIdempotencyKey(%+q) = %v; the rules say valid=%v", key, err, want)
		}
		var inv *InvalidError
		if err != nil && (!errors.As(err, &inv) || inv.Field != "idempotency_key") {
			t.Fatalf("ValidateIdempotencyKey(%+q) = %v; want an InvalidError naming idempotency_key", key, err)
		}
	})
}
