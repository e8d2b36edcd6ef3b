package server

import (
	"encoding/base64"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzPageOf reads arbitrary ?limit= and ?continue= values: no panic, and
// whatever is accepted is a limit from 1 to maxPageLimit and a key below
// the list's directory (no empty, "." or ".." segment) at a positive
// revision, so that the store is only ever asked for keys inside the
// directory the request's path picked.
func FuzzPageOf(f *testing.F) {
	f.Add("2", next("/workloads/biology/web", 7))
	f.Add("1000", nextBelow("/workloads", "/workloads/geology/maps", 12))
	f.Add("0", "")
	f.Add("-1", "eyJhIjoiLi4iLCJyIjoxfQ")
	f.Add("x", base64.RawURLEncoding.EncodeToString([]byte(`{"a":"../biology/x","r":1}`)))
	f.Add("5", base64.RawURLEncoding.EncodeToString([]byte(`{"a":"a//b","r":9223372036854775807}`)))
	f.Fuzz(func(t *testing.T, limit, cont string) {
		q := url.Values{"limit": {limit}, "continue": {cont}}
		r := httptest.NewRequest("GET", "/v1/workloads?"+q.Encode(), nil)
		p, err := pageOf(r)
		if err != nil {
			if he, ok := err.(*httpError); !ok || he.Status != 400 || !strings.Contains(he.Msg, "limit") && !strings.Contains(he.Msg, "continue") {
				t.Fatalf("error %v does not name the parameter", err)
			}
			return
		}
		if p.limit < 1 || p.limit > maxPageLimit {
			t.Fatalf("limit %d accepted", p.limit)
		}
		if cont == "" {
			return
		}
		if p.rev <= 0 || !relativeKey(p.after) {
			t.Fatalf("continue %q accepted as after %q rev %d", cont, p.after, p.rev)
		}
		for seg := range strings.SplitSeq(p.after, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("continue %q reaches out with %q", cont, p.after)
			}
		}
	})
}

// FuzzParseTTL: a token lifetime is refused or within 1m..MaxTokenTTL,
// and a number of days is that many days: "213504d" once wrapped around
// int64 into 25 minutes.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"30d", "720h", "90m", "366d", "367d", "213504d", "2562047d", "-1d", "0.5d", "1e3h", "d", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTTL(s)
		if err != nil {
			return
		}
		if d < time.Minute || d > MaxTokenTTL {
			t.Fatalf("%q accepted as %v", s, d)
		}
		if n, ok := strings.CutSuffix(s, "d"); ok {
			h, err := time.ParseDuration(n + "h")
			if err != nil || h*24 != d {
				t.Fatalf("%q accepted as %v, not %s days", s, d, n)
			}
		}
	})
}
