package pagetoken

import "github.com/herald-feed/herald/services/platform/feed"

// Request is a parsed page request: how many items, and where to start.
type Request struct {
	// Size is the page size: the request's, with 0 meaning
	// feed.DefaultPageSize and anything above the list's maximum meaning
	// the maximum.
	Size int
	// Cursor is where the page starts; the zero Cursor is the first page.
	Cursor Cursor
}

// ParseRequest is the one parser of a list call's page_size and
// page_token: a negative size is invalid (it names page_size), and a token
// must have been issued for scope. max is the list's largest page.
func (c *Codec) ParseRequest(scope string, pageSize int32, max int, token string) (Request, error) {
	size, err := feed.PageSize(pageSize, feed.DefaultPageSize, max)
	if err != nil {
		return Request{}, err
	}
	r := Request{Size: size}
	if token != "" {
		if r.Cursor, err = c.Decode(scope, token); err != nil {
			return Request{}, err
		}
	}
	return r, nil
}
