package server

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"rung.dev/rung/internal/auth"

	"rung.dev/rung/internal/server/wire"
)

// Limits are the API's rate limits (DESIGN §11). Zero fields take their
// defaults.
type Limits struct {
	// TokenRate is the requests per second one tenant or node token may
	// send (default 200), with bursts of TokenBurst (default 400).
	TokenRate  float64 `json:"tokenRate,omitempty"`
	TokenBurst int     `json:"tokenBurst,omitempty"`
	// OperatorRate and OperatorBurst are the same for operator tokens
	// (default 5000 and 10000: the site's own automation).
	OperatorRate  float64 `json:"operatorRate,omitempty"`
	OperatorBurst int     `json:"operatorBurst,omitempty"`
	// FailureRate is the failed authentications per second one client
	// address may make (default 10), with bursts of FailureBurst (default
	// 100); past that, every request from the address is answered 429 until
	// the allowance refills, before its token is looked at.
	FailureRate  float64 `json:"failureRate,omitempty"`
	FailureBurst int     `json:"failureBurst,omitempty"`
	// AuditInterval is how often the refused and throttled requests are
	// summed up in one audit entry (default 1m).
	AuditInterval time.Duration `json:"-"`
}

func (l Limits) withDefaults() Limits {
	l.TokenRate = cmp.Or(l.TokenRate, 200)
	l.TokenBurst = cmp.Or(l.TokenBurst, 400)
	l.OperatorRate = cmp.Or(l.OperatorRate, 5000)
	l.OperatorBurst = cmp.Or(l.OperatorBurst, 10000)
	l.FailureRate = cmp.Or(l.FailureRate, 10)
	l.FailureBurst = cmp.Or(l.FailureBurst, 100)
	l.AuditInterval = cmp.Or(l.AuditInterval, time.Minute)
	return l
}

// maxLimiters bounds each table of limiters; idle ones (full again) go
// first when it is full.
const maxLimiters = 10000

// limiters is a table of token buckets by key (a client address or a
// token ID).
type limiters struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

func newLimiters(r float64, burst int) *limiters {
	return &limiters{r: rate.Limit(r), burst: burst, m: map[string]*rate.Limiter{}}
}

// get returns key's limiter, making it (and making room) if needed.
func (l *limiters) get(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.m[key]; ok {
		return lim
	}
	if len(l.m) >= maxLimiters {
		for k, lim := range l.m {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k) // as good as new
			}
		}
		for k := range l.m { // still full: forget some at random
			if len(l.m) < maxLimiters/2 {
				break
			}
			delete(l.m, k)
		}
	}
	lim := rate.NewLimiter(l.r, l.burst)
	l.m[key] = lim
	return lim
}

// wait is how long until one more event is allowed (0 if now), taking it
// when it is allowed.
func (l *limiters) take(key string, now time.Time) time.Duration {
	lim := l.get(key, now)
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// empty reports how long until key may fail again, without taking.
func (l *limiters) empty(key string, now time.Time) time.Duration {
	l.mu.Lock()
	lim, ok := l.m[key]
	l.mu.Unlock()
	if !ok {
		return 0
	}
	if t := lim.TokensAt(now); t < 1 {
		return time.Duration((1 - t) / float64(l.r) * float64(time.Second))
	}
	return 0
}

// rateLimits are the server's limiters.
type rateLimits struct {
	now       func() time.Time
	tokens    *limiters
	operators *limiters
	failures  *limiters
}

func newRateLimits(l Limits, now func() time.Time) *rateLimits {
	return &rateLimits{now: now, tokens: newLimiters(l.TokenRate, l.TokenBurst),
		operators: newLimiters(l.OperatorRate, l.OperatorBurst), failures: newLimiters(l.FailureRate, l.FailureBurst)}
}

// tokenWait takes one request from p's token's allowance; > 0 is how long
// to wait when there is none.
func (rl *rateLimits) tokenWait(p auth.Principal) time.Duration {
	if p.Role == auth.Operator {
		return rl.operators.take(p.ID, rl.now())
	}
	return rl.tokens.take(p.ID, rl.now())
}

// addressBlocked is > 0 while addr has failed too often.
func (rl *rateLimits) addressBlocked(addr string) time.Duration {
	return rl.failures.empty(addr, rl.now())
}

// failed takes one failure from addr's allowance.
func (rl *rateLimits) failed(addr string) { rl.failures.take(addr, rl.now()) }

// clientAddr is the address a request came from, as the connection shows
// it (headers such as X-Forwarded-For are the client's to forge). IPv6
// clients are counted by /64, which one host usually has whole.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func tooMany(wait time.Duration, why string) *httpError {
	return &httpError{Status: http.StatusTooManyRequests, Code: wire.CodeTooMany, RetryAfter: wait,
		Msg: fmt.Sprintf("%s; retry after %v", why, max(time.Second, wait.Round(time.Second)))}
}

// maxDenialAddrs bounds the addresses one denial summary counts by name.
const maxDenialAddrs = 1000

// denials sums up refused requests between two audit entries: one entry
// per interval however many there were (DESIGN §11), so that a flood of
// bad tokens costs no write each.
type denials struct {
	mu     sync.Mutex
	counts map[string]int // missing, invalid, throttled-address, throttled-token
	addrs  map[string]int
	since  time.Time
}

// unauthenticated counts a request without a valid token from addr.
func (s *Server) unauthenticated(addr, reason string) {
	s.metrics.unauthenticated.WithLabelValues(reason).Inc()
	s.metrics.denials.WithLabelValues(wire.CodeUnauthenticated).Inc()
	s.limits.failed(addr)
	s.denied.add(addr, reason, s.now)
}

// throttled counts a request answered 429.
func (s *Server) throttled(addr, scope string) {
	s.metrics.throttled.WithLabelValues(scope).Inc()
	s.denied.add(addr, "throttled-"+scope, s.now)
}

func (d *denials) add(addr, reason string, now func() time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.counts == nil {
		d.counts, d.addrs, d.since = map[string]int{}, map[string]int{}, now()
	}
	d.counts[reason]++
	if _, ok := d.addrs[addr]; ok || len(d.addrs) < maxDenialAddrs {
		d.addrs[addr]++
	} else {
		d.addrs["other"]++
	}
}

// take returns the counts so far and starts afresh.
func (d *denials) take() (counts, addrs map[string]int, since time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	counts, addrs, since = d.counts, d.addrs, d.since
	d.counts, d.addrs = nil, nil
	return counts, addrs, since
}

// restore adds counts taken but not written back.
func (d *denials) restore(counts, addrs map[string]int, since time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.counts == nil {
		d.counts, d.addrs = map[string]int{}, map[string]int{}
	}
	d.since = since
	for k, n := range counts {
		d.counts[k] += n
	}
	for a, n := range addrs {
		if _, ok := d.addrs[a]; !ok && len(d.addrs) >= maxDenialAddrs {
			a = "other"
		}
		d.addrs[a] += n
	}
}

// flushDenials writes one audit entry summing up the refused requests
// since the last one, if there were any.
func (s *Server) flushDenials(ctx context.Context) error {
	counts, addrs, since := s.denied.take()
	if len(counts) == 0 {
		return nil
	}
	total := 0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		total += counts[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	top := slices.SortedFunc(maps.Keys(addrs), func(a, b string) int { return cmp.Or(addrs[b]-addrs[a], strings.Compare(a, b)) })
	if len(top) > 5 {
		top = top[:5]
	}
	for i, a := range top {
		top[i] = fmt.Sprintf("%s ×%d", a, addrs[a])
	}
	msg := fmt.Sprintf("%d request(s) refused since %s (%s) from %d address(es); most from %s",
		total, since.UTC().Format(time.RFC3339), strings.Join(parts, ", "), len(addrs), strings.Join(top, ", "))
	e := Entry{Actor: "anonymous", Action: "authenticate", Result: wire.CodeUnauthenticated, Message: msg}
	if _, err := s.commit(ctx, e); err != nil {
		s.denied.restore(counts, addrs, since) // counted again next time rather than lost
		return fmt.Errorf("audit refused requests: %w", err)
	}
	return nil
}

// runDenials flushes the denial summary every interval until ctx ends,
// and once more then.
func (s *Server) runDenials(ctx context.Context) {
	t := time.NewTicker(s.limitCfg.AuditInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := s.flushDenials(fctx); err != nil {
				s.log.Warn("audit", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := s.flushDenials(ctx); err != nil {
				s.log.Warn("audit", "err", err)
			}
		}
	}
}
