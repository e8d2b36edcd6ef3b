package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
)

// apiLoad is what ran beside the second run's applies.
type apiLoad struct {
	lists, listErrors atomic.Int64
}

// benchAPIUnderLoad applies again while clients list, and prints the
// figures as ratios to base (the same run alone). The bad-token flood has
// its own interleaved runs (benchflood.go).
func benchAPIUnderLoad(ctx context.Context, out io.Writer, c *client.Client, opts benchAPIOptions, base benchAPIResult) (benchAPIResult, error) {
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
	fmt.Fprintf(out, "again, with %d listers meanwhile:\n", opts.listers)
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
