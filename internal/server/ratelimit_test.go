package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address local ("" for the default, 127.0.0.1; 127.0.0.2 is another
// client).
func clientFrom(local string) *http.Client {
	d := &net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16}}
}

func get(t *testing.T, hc *http.Client, url, token string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) // so that the connection is reused
	resp.Body.Close()
	return resp
}

// TestBadTokenFlood: 20,000 requests with bad tokens over loopback cost
// no audit entry each: the store grows by less than 1 MB, and one entry
// sums them up. The flooding address is answered 429 with Retry-After;
// another client's valid token keeps working.
func TestBadTokenFlood(t *testing.T) {
	t.Parallel()
	// An allowance that does not refill during the test: the burst is
	// answered 401, whatever the machine's speed.
	e := newEnvWith(t, func(c *server.Config) { c.Limits = server.Limits{FailureRate: 0.0001, FailureBurst: 100} }).seed()
	ctx := t.Context()
	sizeBefore := fileSize(t, e.store.Path())
	headBefore := e.lastAudit().Seq

	flooder, other := clientFrom(""), clientFrom("127.0.0.2")
	if !strings.HasPrefix(e.url, "http://127.0.0.1:") {
		t.Skipf("the test server is not on 127.0.0.1 (%s): no second loopback client address", e.url)
	}
	if r := get(t, flooder, e.url+"/v1/whoami", e.tokens["admin"]); r.StatusCode != http.StatusOK {
		t.Fatalf("valid token before the flood: %d", r.StatusCode)
	}
	const total, workers = 20000, 8
	var n401, n429, retryAfter atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= total; i = next.Add(1) {
				tok := "rung_0123456789abcdef_" + strings.Repeat("0", 64) // well-formed, unknown
				if i%2 == 0 {
					tok = "garbage-" + strconv.FormatInt(i, 10)
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/workloads", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := flooder.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusUnauthorized:
					n401.Add(1)
				case http.StatusTooManyRequests:
					n429.Add(1)
					if resp.Header.Get("Retry-After") != "" {
						retryAfter.Add(1)
					}
				default:
					t.Errorf("bad token answered %d", resp.StatusCode)
				}
			}
		})
	}
	// Meanwhile another client's valid token works.
	if r := get(t, other, e.url+"/v1/whoami", e.tokens["admin"]); r.StatusCode != http.StatusOK {
		t.Errorf("another address's valid token during the flood: %d", r.StatusCode)
	}
	wg.Wait()
	t.Logf("flood: %d answered 401, %d answered 429", n401.Load(), n429.Load())
	// Up to one request per worker may pass the check while the last of the
	// allowance is being spent.
	if n401.Load() < 100 || n401.Load() > 100+workers || n401.Load()+n429.Load() != total || retryAfter.Load() != n429.Load() {
		t.Fatalf("401: %d, 429: %d (%d with Retry-After)", n401.Load(), n429.Load(), retryAfter.Load())
	}
	// The flooding address is throttled even with a valid token, until its
	// allowance refills; another address is not.
	if r := get(t, flooder, e.url+"/v1/whoami", e.tokens["admin"]); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("flooding address right after the flood: %d", r.StatusCode)
	}
	if r := get(t, other, e.url+"/v1/whoami", e.tokens["admin"]); r.StatusCode != http.StatusOK {
		t.Errorf("another address after the flood: %d", r.StatusCode)
	}

	if err := e.srv.FlushDenials(ctx); err != nil {
		t.Fatal(err)
	}
	grown := fileSize(t, e.store.Path()) - sizeBefore
	last := e.lastAudit()
	t.Logf("store grew %d bytes; %d audit entries", grown, last.Seq-headBefore)
	if grown >= 1<<20 {
		t.Errorf("the store grew %d bytes for %d refused requests", grown, total)
	}
	if last.Seq-headBefore > 3 {
		t.Errorf("%d audit entries for the flood, want one summary", last.Seq-headBefore)
	}
	if !strings.Contains(string(last.Details), fmt.Sprintf("%d request(s) refused", total+1)) || !strings.Contains(string(last.Details), "127.0.0.1") {
		t.Errorf("summary entry %s", last.Details)
	}
	// The counters are in /metrics.
	body := string(rawDo(t, other, e.url, e.tokens, "operator", "GET", "/metrics", nil).body)
	if sumMetric(t, body, `rung_api_unauthenticated_total{reason="invalid"}`)+sumMetric(t, body, `rung_api_throttled_total{scope="address"}`) != total+1 {
		t.Errorf("metrics:\n%s", grep(body, "rung_api_(unauth|throttled)"))
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func sumMetric(t *testing.T, body, series string) int64 {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(series) + ` ([0-9.e+]+)`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no series %s", series)
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int64(f)
}

func grep(body, re string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if regexp.MustCompile(re).MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestTokenRateLimit: a token past its allowance gets 429 with
// Retry-After; another token does not.
func TestTokenRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *server.Config) { c.Limits = server.Limits{OperatorRate: 0.01, OperatorBurst: 5} })
	for _, who := range []string{"viewer", "admin"} {
		tok, _, err := e.srv.IssueToken(t.Context(), auth.Principal{}, auth.Principal{Role: auth.Operator}, who)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[who] = tok
	}
	var codes []int
	for range 6 {
		codes = append(codes, e.do("viewer", "GET", "/v1/whoami", nil).status)
	}
	if fmt.Sprint(codes) != "[200 200 200 200 200 429]" {
		t.Fatalf("viewer's answers %v", codes)
	}
	r := e.do("viewer", "GET", "/v1/whoami", nil)
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); r.status != http.StatusTooManyRequests || err != nil || ra < 1 {
		t.Errorf("throttled answer %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if r := e.do("admin", "GET", "/v1/whoami", nil); r.status != http.StatusOK {
		t.Errorf("another token: %d", r.status)
	}

	// Tenant tokens have their own, lower limit.
	e = newEnvWith(t, func(c *server.Config) { c.Limits = server.Limits{TokenRate: 0.01, TokenBurst: 2} }).seed()
	codes = nil
	for range 3 {
		codes = append(codes, e.do("viewer", "GET", "/v1/whoami", nil).status)
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("tenant viewer's answers %v", codes)
	}
	if r := e.do("operator", "GET", "/v1/whoami", nil); r.status != http.StatusOK {
		t.Errorf("operator after a tenant was throttled: %d", r.status)
	}
}
