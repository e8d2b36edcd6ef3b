package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
)

// badTokenClients send the bad-token flood (at most this many at once).
const badTokenClients = 20

// apiLoad is what ran beside the second run's applies.
type apiLoad struct {
	lists, listErrors      atomic.Int64
	bad, refused, accepted atomic.Int64
}

// benchAPIUnderLoad applies again while clients list and a bad-token flood
// runs, and prints the figures as ratios to base (the same run alone).
func benchAPIUnderLoad(ctx context.Context, out io.Writer, c *client.Client, opts benchAPIOptions, base benchAPIResult) (benchAPIResult, error) {
	var seq int64
	if opts.badTokens > 0 {
		tail, err := c.TailEvents(ctx, 1)
		if err != nil {
			return benchAPIResult{}, fmt.Errorf("read the audit log's end: %w", err)
		}
		if n := len(tail.Events); n > 0 {
			seq = tail.Events[n-1].Seq
		}
	}
	var load apiLoad
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range opts.listers {
		wg.Go(func() {
			for lctx.Err() == nil {
				list := listBytes
				if opts.decodeLists {
					list = func(ctx context.Context, c *client.Client) error {
						_, err := c.List(ctx, v1.KindWorkload, "bench")
						return err
					}
				}
				if err := list(lctx, c); err != nil {
					if lctx.Err() == nil {
						load.listErrors.Add(1)
					}
					continue
				}
				load.lists.Add(1)
			}
		})
	}
	if opts.badTokens > 0 {
		// From another loopback address, as an attacker's own: the
		// server throttles failed sign-ins per address.
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
			MaxIdleConnsPerHost: badTokenClients,
		}}
		defer hc.CloseIdleConnections()
		u := c.Server() + "/v1/tenants/bench/workloads?limit=1"
		var sent atomic.Int64
		for range badTokenClients {
			wg.Go(func() {
				for lctx.Err() == nil && sent.Add(1) <= int64(opts.badTokens) {
					req, err := http.NewRequestWithContext(lctx, http.MethodGet, u, nil)
					if err != nil {
						return
					}
					req.Header.Set("Authorization", "Bearer rung_not-a-token")
					resp, err := hc.Do(req)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusUnauthorized, http.StatusTooManyRequests:
						load.refused.Add(1)
					case http.StatusOK:
						load.accepted.Add(1)
					}
					load.bad.Add(1)
				}
			})
		}
	}
	fmt.Fprintf(out, "again, with %d listers and %d bad-token requests meanwhile:\n", opts.listers, opts.badTokens)
	res, err := benchAPI(ctx, c, opts, "loaded")
	stop()
	wg.Wait()
	if err != nil {
		return res, err
	}
	printBenchAPI(out, res)
	rate := func(r benchAPIResult) float64 { return float64(r.Requests) / r.Elapsed.Seconds() }
	fmt.Fprintf(out, "under load: applies/s %.2f× of alone, p99 %.2f× of alone\n", rate(res)/rate(base), float64(res.P99)/float64(max(base.P99, 1)))
	if opts.listers > 0 {
		fmt.Fprintf(out, "listers: %d lists (%.0f/s), %d failed\n", load.lists.Load(), float64(load.lists.Load())/res.Elapsed.Seconds(), load.listErrors.Load())
	}
	if opts.badTokens > 0 {
		fmt.Fprintf(out, "bad tokens: %d sent, %d refused (401/429), %d accepted\n", load.bad.Load(), load.refused.Load(), load.accepted.Load())
		entries, size, err := auditGrowth(ctx, c, seq)
		if err != nil {
			return res, err
		}
		fmt.Fprintf(out, "audit log: %d entries other than the applies' during the run, ~%.1f KiB\n", entries, float64(size)/1024)
		if load.accepted.Load() > 0 {
			return res, fmt.Errorf("%d requests with a wrong token were accepted", load.accepted.Load())
		}
	}
	return res, nil
}

// auditGrowth counts the audit entries after seq that are not applies
// (denials, their aggregated lines) and estimates their stored size: the
// event as the API shows it plus the entry's hashes and numbers.
func auditGrowth(ctx context.Context, c *client.Client, seq int64) (entries int, size int, err error) {
	for {
		evs, err := c.Events(ctx, seq, 1000)
		if err != nil {
			return 0, 0, fmt.Errorf("read the audit log: %w", err)
		}
		for _, e := range evs.Events {
			if e.Action == "apply" && e.Kind == v1.KindWorkload && e.Tenant == "bench" {
				continue
			}
			b, _ := json.Marshal(e)
			entries, size = entries+1, size+len(b)+2*64+64
		}
		if len(evs.Events) == 0 || evs.Next <= seq {
			return entries, size, nil
		}
		seq = evs.Next
	}
}

// listBytes lists the bench's workloads page by page as a client on
// another machine would, without decoding the items here: only the
// continue value at the end of each page is read. Like client.List, it
// starts again (at most 5 times) when a page is 410.
func listBytes(ctx context.Context, c *client.Client) error {
	var err error
	for range 5 {
		cont := ""
		for {
			var tail tailWriter
			if err = c.ListPageTo(ctx, v1.KindWorkload, "bench", 0, cont, &tail); err != nil {
				break
			}
			if cont, err = pageContinue(tail.b); err != nil || cont == "" {
				return err
			}
		}
		if !errors.Is(err, client.ErrExpired) {
			return err
		}
	}
	return err
}

// pageContinue reads the continue value of a list page from what follows
// its items: the page's last ']' closes them (a revision and a base64
// token hold none).
func pageContinue(body []byte) (string, error) {
	i := bytes.LastIndexByte(body, ']')
	if i < 0 || i+1 >= len(body) || body[i+1] != ',' {
		return "", fmt.Errorf("list page: no items array in %.80q", body)
	}
	var tail struct {
		Continue string `json:"continue"`
	}
	if err := json.Unmarshal(append([]byte("{"), body[i+2:]...), &tail); err != nil {
		return "", fmt.Errorf("list page: %w", err)
	}
	return tail.Continue, nil
}

// tailWriter keeps the last 4 KiB written to it (a page's end, where its
// continue value is).
type tailWriter struct{ b []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	const keep = 4 << 10
	if len(p) >= keep {
		t.b = append(t.b[:0], p[len(p)-keep:]...)
		return len(p), nil
	}
	if drop := len(t.b) + len(p) - keep; drop > 0 {
		t.b = t.b[:copy(t.b, t.b[drop:])]
	}
	t.b = append(t.b, p...)
	return len(p), nil
}
