package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
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
		if err != nil || len(c) > 2048 || json.Unmarshal(data, &cur) != nil || !relativeKey(cur.After) || cur.Rev <= 0 {
			return p, badRequest("continue: malformed; pass the continue value of the previous page unchanged")
		}
		p.after, p.rev = cur.After, cur.Rev
	}
	return p, nil
}

// relativeKey reports whether a continue token's key is a path below a
// list's directory: non-empty segments, none "." or "..". The directory
// itself comes from the request (and the caller's role), and the store
// lists only keys below it, so a token cannot reach outside it anyway;
// this refuses what no page of ours ever hands out.
func relativeKey(k string) bool {
	if k == "" {
		return false
	}
	for seg := range strings.SplitSeq(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// next is the continue token of a page that ended at key, at rev. It
// holds the key's last segment only, for lists of one directory level.
func next(key string, rev int64) string {
	data, _ := json.Marshal(cursor{After: key[strings.LastIndexByte(key, '/')+1:], Rev: rev})
	return base64.RawURLEncoding.EncodeToString(data)
}

// nextBelow is next for a list of dir that may span several levels (an
// operator's list of every tenant's workloads, /workloads/TENANT/NAME):
// the token holds key below dir, "TENANT/NAME", so the next page resumes
// after it rather than after a bare "/workloads/NAME".
func nextBelow(dir, key string, rev int64) string {
	rel, ok := strings.CutPrefix(key, dir+"/")
	if !ok {
		return next(key, rev)
	}
	data, _ := json.Marshal(cursor{After: rel, Rev: rev})
	return base64.RawURLEncoding.EncodeToString(data)
}

// listPage reads one page of dir for p, turning a revision the store can
// no longer show into 410 (list again from the first page) and a
// continue token of another list into 400.
func (s *Server) listPage(ctx context.Context, dir string, p page) (store.Page, error) {
	after := ""
	if p.after != "" {
		after = dir + "/" + p.after
	}
	pg, err := s.store.ListPage(ctx, dir, after, p.limit, p.rev)
	switch {
	case errors.Is(err, store.ErrCompacted):
		return pg, &httpError{Status: http.StatusGone, Code: wire.CodeExpired,
			Msg: "the list changed since its first page (or is too old); list again from the first page", Err: err}
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrInvalidKey):
		return pg, &httpError{Status: http.StatusBadRequest, Code: wire.CodeInvalid,
			Msg: "continue: not a continue value of this list; pass the previous page's continue unchanged", Err: err}
	case err != nil:
		return pg, fmt.Errorf("list %s: %w", dir, err)
	}
	return pg, nil
}
