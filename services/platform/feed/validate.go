package feed

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidateUserID checks a user ID held in the named request field: 1 to 64
// characters from [a-z0-9_].
func ValidateUserID(field, id string) error {
	if id == "" {
		return Invalid(field, "must not be empty")
	}
	if len(id) > MaxUserIDLen {
		return Invalid(field, "must be at most 64 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return Invalid(field, "must contain only a-z, 0-9 and _")
		}
	}
	return nil
}

// ValidateText checks a post body:
//
//   - valid UTF-8, 1 to 500 characters (runes);
//   - no control characters other than newline;
//   - no bidirectional embedding, override or isolate controls
//     (U+202A–U+202E, U+2066–U+2069): they make text display in a different
//     order than it is stored, which can disguise a link or a name. The
//     marks U+200E, U+200F and U+061C stay allowed, since right-to-left
//     writing needs them and they cannot reorder a run of text;
//   - at least one visible character (see visible): text made only of
//     white space, zero-width and filler characters, or combining marks
//     with no base character shows nothing.
//
// Invisible characters next to visible ones are kept as they are: emoji
// ZWJ and flag tag sequences, variation selectors and combining accents
// need them.
func ValidateText(text string) error {
	if !utf8.ValidString(text) {
		return Invalid("text", "must be valid UTF-8")
	}
	if strings.TrimSpace(text) == "" {
		return Invalid("text", "must not be empty")
	}
	if utf8.RuneCountInString(text) > MaxTextRunes {
		return Invalid("text", "must be at most 500 characters")
	}
	seen := false
	for _, r := range text {
		switch {
		case r == '\n':
		case unicode.IsControl(r):
			return Invalid("text", "must not contain control characters other than newline")
		case bidiOverride(r):
			return Invalid("text", fmt.Sprintf("must not contain the bidirectional control %U: embedding, override and isolate controls (U+202A to U+202E, U+2066 to U+2069) can make text display in a different order than it is stored; the marks U+200E, U+200F and U+061C are allowed", r))
		}
		seen = seen || visible(r)
	}
	if !seen {
		return Invalid("text", "must contain a visible character: white space, zero-width and filler characters, and combining marks without a base character do not count")
	}
	return nil
}

// invisible holds the Unicode tables of characters that draw nothing on
// their own: format characters (zero-width space, U+FEFF, soft hyphen,
// joiners, bidi marks, tag characters), the other default-ignorable code
// points (the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, the
// combining grapheme joiner, the unassigned rest of the tag block),
// variation selectors, and nonspacing and enclosing marks, which draw only
// on a base character.
var invisible = []*unicode.RangeTable{
	unicode.Cf,
	unicode.Other_Default_Ignorable_Code_Point,
	unicode.Variation_Selector,
	unicode.Mn,
	unicode.Me,
}

// Characters that draw nothing but that no Unicode property marks as
// ignorable: both are symbols (category So) with a blank glyph, and both
// are passed around as "invisible characters" for blank names and posts.
const (
	brailleBlank = '\u2800'     // BRAILLE PATTERN BLANK
	nullNotehead = '\U0001D159' // MUSICAL SYMBOL NULL NOTEHEAD
)

// visible reports whether r, on its own, draws something.
func visible(r rune) bool {
	if unicode.Is(unicode.Prepended_Concatenation_Mark, r) {
		// Format characters that Unicode excludes from the
		// default-ignorable ones because they have a glyph (the Arabic
		// number sign and end of ayah, for example).
		return true
	}
	return !unicode.IsSpace(r) && !unicode.In(r, invisible...) && r != brailleBlank && r != nullNotehead
}

// bidiOverride reports whether r is a Bidi_Control character other than
// the marks (U+061C ARABIC LETTER MARK, U+200E LEFT-TO-RIGHT MARK, U+200F
// RIGHT-TO-LEFT MARK): one that starts or ends an embedding, override or
// isolate, and so can reorder whole runs of text.
func bidiOverride(r rune) bool {
	return unicode.Is(unicode.Bidi_Control, r) && r != '\u061c' && r != '\u200e' && r != '\u200f'
}

// ValidateIdempotencyKey checks an optional client idempotency key: empty
// (no key), or at most 128 printable ASCII characters other than space,
// '!' (0x21) to '~' (0x7E). Keys are opaque tokens (UUIDs, counters), and
// the rule keeps them unambiguous: with no space a key that some layer of
// a client padded or trimmed is refused instead of silently being another
// key, and with ASCII only there are no look-alike characters or
// normalisation forms that spell one key two ways.
func ValidateIdempotencyKey(key string) error {
	// The characters first: once they are ASCII, bytes are characters and
	// the length error can say characters.
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < '!' || c > '~' {
			return Invalid("idempotency_key", fmt.Sprintf("must contain only printable ASCII characters other than space ('!' to '~'); byte %d is 0x%02x", i, c))
		}
	}
	if len(key) > MaxIdempotencyKey {
		return Invalid("idempotency_key", "must be at most 128 characters")
	}
	return nil
}
