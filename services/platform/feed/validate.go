package feed

import (
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

// ValidateText checks a post body: valid UTF-8, 1 to 500 characters, not
// only white space, and no control characters other than newline.
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
	for _, r := range text {
		if r != '\n' && unicode.IsControl(r) {
			return Invalid("text", "must not contain control characters other than newline")
		}
	}
	return nil
}

// ValidateIdempotencyKey checks an optional client idempotency key.
func ValidateIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKey {
		return Invalid("idempotency_key", "must be at most 128 bytes")
	}
	if !utf8.ValidString(key) {
		return Invalid("idempotency_key", "must be valid UTF-8")
	}
	return nil
}
