package server

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"rung.dev/rung/internal/server/wire"
)

// Page sizes of list endpoints.
const (
	// defaultPageLimit is the page size when a request names none.
	defaultPageLimit = 500
	// maxPageLimit is the largest page a request may ask for.
	maxPageLimit = 1000
)

// page is what a list request asks for: at most limit items after the
// key a continue token names.
type page struct {
	limit int
	after string
	rev   int64 // the revision of the first page; 0 on the first page
}

// cursor is the decoded form of a continue token. It is opaque to
// clients; it names no object beyond what the caller has already seen.
type cursor struct {
	After string `json:"a"`
	Rev   int64  `json:"r"`
}

// pageOf reads ?limit= and ?continue=.
func pageOf(r *http.Request) (page, error) {
	q := r.URL.Query()
	p := page{limit: defaultPageLimit}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPageLimit {
			return p, badRequest("limit: %q is not a number from 1 to %d", truncate(l, 16), maxPageLimit)
		}
		p.limit = n
	}
	if c := q.Get("continue"); c != "" {
		data, err := base64.RawURLEncoding.DecodeString(c)
		var cur cursor
		if err != nil || len(c) > 2048 || json.Unmarshal(data, &cur) != nil || cur.After == "" || cur.Rev <= 0 {
			return p, badRequest("continue: malformed; pass the continue value of the previous page unchanged")
		}
		p.after, p.rev = cur.After, cur.Rev
	}
	return p, nil
}

// next is the continue token of a page that ended at key, at rev.
func next(key string, rev int64) string {
	data, _ := json.Marshal(cursor{After: key, Rev: rev})
	return base64.RawURLEncoding.EncodeToString(data)
}

// paginate cuts one page out of items sorted by key, returning the page
// and the continue token of the next one ("" for the last).
func paginate[T any](items []T, p page, rev int64, key func(T) string) ([]T, string) {
	start := 0
	if p.after != "" {
		for start < len(items) && key(items[start]) <= p.after {
			start++
		}
	}
	items = items[start:]
	if len(items) <= p.limit {
		return items, ""
	}
	items = items[:p.limit]
	return items, next(key(items[len(items)-1]), rev)
}

var _ = wire.List{}
