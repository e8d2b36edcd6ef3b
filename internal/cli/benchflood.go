package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"rung.dev/rung/internal/client"
)

// The bad-token flood of `rung bench api --bad-tokens N` comes from a
// process of its own, as an attacker's tool would: sharing the bench's Go
// scheduler, its goroutines would starve the measuring clients, which
// measures the bench, not the server. It is open-loop: request i is due
// at i/rate seconds after the start whatever the answers, so that all N
// are offered during the applies at a rate the output states, instead of
// as fast as the answers come (a closed loop on the same cores takes what
// CPU the scheduler gives it, whatever the server does).

// floodResult is what the flood peer reports (JSON on its stdout).
type floodResult struct {
	Sent     int `json:"sent"`
	Answered int `json:"answered"`
	// Unauthorized and TooMany are the 401 and 429 answers; Accepted the
	// 2xx ones (a wrong token accepted: the bench fails); Other the rest.
	Unauthorized int `json:"unauthorized"`
	TooMany      int `json:"tooMany"`
	Accepted     int `json:"accepted"`
	Other        int `json:"other"`
	// Failed requests got no answer (refused or cut connections).
	Failed  int           `json:"failed"`
	Elapsed time.Duration `json:"elapsedNs"`
	// MaxLate is how far behind its due time the latest request went out:
	// near zero when the flood really ran at its rate.
	MaxLate time.Duration `json:"maxLateNs"`
}

// flood sends count GETs of url with a wrong token at rate per second
// over at most conns keep-alive connections made by dial, and counts the
// answers. Each connection is written and read by one goroutine with the
// request serialized once (net/http's own Request.Write and
// ReadResponse), as lean flood tools send: the sender shares this
// machine's cores with the server, and http.Client's per-request
// goroutines and channels would cost more than the server's refusal.
func flood(ctx context.Context, dial func(context.Context) (net.Conn, error), url string, count int, rate float64, conns int) floodResult {
	var (
		mu  sync.Mutex
		res floodResult
		wg  sync.WaitGroup
	)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		res.Failed = count
		return res
	}
	req.Header.Set("Authorization", "Bearer rung_not-a-token")
	var raw bytes.Buffer
	if err := req.Write(&raw); err != nil {
		res.Failed = count
		return res
	}
	due := make(chan time.Time, conns)
	for range conns {
		wg.Go(func() {
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			send := func() (int, error) {
				if c == nil {
					var err error
					if c, err = dial(ctx); err != nil {
						return 0, err
					}
					br = bufio.NewReader(c)
				}
				if _, err := c.Write(raw.Bytes()); err != nil {
					return 0, err
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return 0, err
				}
				_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
				if err == nil && resp.Close {
					err = errClosed // answered; the server ends the connection
				}
				return resp.StatusCode, err
			}
			for at := range due {
				late := time.Since(at)
				code, err := send()
				if err != nil && c != nil {
					c.Close()
					c = nil
				}
				mu.Lock()
				res.Sent++
				res.MaxLate = max(res.MaxLate, late)
				switch {
				case code == 0:
					res.Failed++
				case code == http.StatusUnauthorized:
					res.Unauthorized++
				case code == http.StatusTooManyRequests:
					res.TooMany++
				case code >= 200 && code < 300:
					res.Accepted++
				default:
					res.Other++
				}
				if code != 0 {
					res.Answered++
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := range count {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		due <- at // blocks while every connection is busy: then it runs late
	}
	close(due)
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// errClosed: the server answered and closed the connection.
var errClosed = errors.New("connection closed by the server")

// newBenchFloodpeerCmd is the flood's own process: "floodpeer URL RATE
// CONNS", from 127.0.0.2 (the server limits failures per address). Each
// line on its stdin is a count of requests to send; it answers each with
// a line of JSON (floodResult). One process for every slice: a start of
// this binary per slice would weigh on the applies too.
func newBenchFloodpeerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "floodpeer URL RATE CONNS",
		Hidden: true,
		Args:   cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			rate, err1 := strconv.ParseFloat(args[1], 64)
			conns, err2 := strconv.Atoi(args[2])
			if err := errors.Join(err1, err2); err != nil || rate <= 0 || conns < 1 {
				return withCode(ExitInvalid, fmt.Errorf("floodpeer URL RATE CONNS: positive numbers (%v)", err))
			}
			u, err := neturl.Parse(args[0])
			if err != nil || u.Scheme != "http" || u.Host == "" {
				return withCode(ExitInvalid, fmt.Errorf("floodpeer: URL %q: want http://HOST:PORT/PATH", args[0]))
			}
			d := &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", u.Host) }
			in := bufio.NewScanner(cmd.InOrStdin())
			enc := json.NewEncoder(cmd.OutOrStdout())
			for in.Scan() {
				n, err := strconv.Atoi(strings.TrimSpace(in.Text()))
				if err != nil || n < 1 {
					return withCode(ExitInvalid, fmt.Errorf("floodpeer: %q is not a count", in.Text()))
				}
				if err := enc.Encode(flood(cmd.Context(), dial, args[0], n, rate, conns)); err != nil {
					return err
				}
			}
			return in.Err()
		},
	}
}

// floodPeer is the command that runs the flood's process: this binary's
// hidden `bench api floodpeer ARGS` (a test runs its own binary instead).
var floodPeer = func(ctx context.Context, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, exe, append([]string{"bench", "api", "floodpeer"}, args...)...), nil
}

// badTokenConns bound the flood's connections: at its rate, more are
// opened while answers are outstanding.
const badTokenConns = 64

// floodRounds is how many slices of applies with the flood alternate
// with as many without it.
const floodRounds = 4

// benchAPIFlood applies in floodRounds pairs of slices, one with a share
// of the flood and one without, in alternating order (load that comes and
// goes on a shared machine falls on both alike), and prints the rates and
// their ratios, what the flood got, and what it added to the audit log.
func benchAPIFlood(ctx context.Context, out io.Writer, c *client.Client, opts benchAPIOptions) (benchAPIResult, error) {
	var all benchAPIResult
	tail, err := c.TailEvents(ctx, 1)
	if err != nil {
		return all, fmt.Errorf("read the audit log's end: %w", err)
	}
	var seq int64
	if n := len(tail.Events); n > 0 {
		seq = tail.Events[n-1].Seq
	}
	u := c.Server() + "/v1/tenants/bench/workloads?limit=1"
	peer, err := floodPeer(ctx, u, strconv.FormatFloat(opts.badRate, 'f', -1, 64), strconv.Itoa(badTokenConns))
	if err != nil {
		return all, err
	}
	peer.Stderr = os.Stderr
	peerIn, err := peer.StdinPipe()
	if err != nil {
		return all, err
	}
	peerOut, err := peer.StdoutPipe()
	if err != nil {
		return all, err
	}
	if err := peer.Start(); err != nil {
		return all, fmt.Errorf("start the flood: %w", err)
	}
	defer func() { peerIn.Close(); _ = peer.Wait() }()
	answers := json.NewDecoder(peerOut)
	share := opts.badTokens / floodRounds
	slice := opts.opts(share)
	fmt.Fprintf(out, "rung bench api: %d clients applying in %d slices of %v with a bad-token flood (%d requests at %.0f/s, from another process) and %d without, alternating, against %s\n",
		opts.clients, floodRounds, slice.duration, share, opts.badRate, floodRounds, c.Server())
	var (
		alone, loaded []benchAPIResult
		fl            floodResult
		ratios        []float64
	)
	for i := range floodRounds {
		n := share
		if i == floodRounds-1 {
			n = opts.badTokens - share*(floodRounds-1)
		}
		withFlood := func() (benchAPIResult, error) {
			if _, err := fmt.Fprintln(peerIn, n); err != nil {
				return benchAPIResult{}, fmt.Errorf("the flood: %w", err)
			}
			res, err := benchAPI(ctx, c, opts.opts(n), "flood")
			var r floodResult
			if derr := answers.Decode(&r); derr != nil {
				return res, errors.Join(err, fmt.Errorf("the flood's count: %w", derr))
			}
			fl = fl.add(r)
			return res, err
		}
		runs := []func() (benchAPIResult, error){func() (benchAPIResult, error) { return benchAPI(ctx, c, opts.opts(n), "alone") }, withFlood}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		var pair [2]benchAPIResult
		for j, run := range runs {
			res, err := run()
			if err != nil {
				return all, err
			}
			all = all.add(res)
			pair[j] = res
		}
		a, l := pair[0], pair[1]
		if i%2 == 1 {
			a, l = l, a
		}
		alone, loaded = append(alone, a), append(loaded, l)
		ratios = append(ratios, l.rate()/a.rate())
		fmt.Fprintf(out, "slice %d: alone %.0f/s (p99 %v), with the flood %.0f/s (p99 %v): %.2f×\n", i+1,
			a.rate(), a.P99.Round(100*time.Microsecond), l.rate(), l.P99.Round(100*time.Microsecond), ratios[i])
	}
	sa, sl := sumResults(alone), sumResults(loaded)
	fmt.Fprintf(out, "alone: %d applies in %v (%.0f/s), p99 of slices %v\n", sa.Requests, sa.Elapsed.Round(time.Millisecond), sa.rate(), medianP99(alone))
	fmt.Fprintf(out, "with the flood: %d applies in %v (%.0f/s), p99 of slices %v\n", sl.Requests, sl.Elapsed.Round(time.Millisecond), sl.rate(), medianP99(loaded))
	slices.Sort(ratios)
	fmt.Fprintf(out, "under the flood: applies/s %.2f× of alone (all slices; per slice %.2f–%.2f×, median %.2f×)\n",
		sl.rate()/sa.rate(), ratios[0], ratios[len(ratios)-1], (ratios[(len(ratios)-1)/2]+ratios[len(ratios)/2])/2)
	fmt.Fprintf(out, "bad tokens: %d sent at %.0f/s offered (%.0f/s done, latest %v behind its time), %d answered 401, %d 429, %d other, %d unanswered, %d accepted\n",
		fl.Sent, opts.badRate, float64(fl.Sent)/fl.Elapsed.Seconds(), fl.MaxLate.Round(time.Millisecond), fl.Unauthorized, fl.TooMany, fl.Other, fl.Failed, fl.Accepted)
	entries, size, err := auditGrowth(ctx, c, seq)
	if err != nil {
		return all, err
	}
	fmt.Fprintf(out, "audit log: %d entries other than the applies' during the runs, ~%.1f KiB\n", entries, float64(size)/1024)
	switch {
	case fl.Accepted > 0:
		return all, fmt.Errorf("%d requests with a wrong token were accepted", fl.Accepted)
	case fl.Sent < opts.badTokens:
		return all, fmt.Errorf("the flood sent %d of %d requests", fl.Sent, opts.badTokens)
	}
	return all, nil
}

// opts are o for one slice carrying n flood requests: as long as they
// take at the flood's rate, however many applies that is.
func (o benchAPIOptions) opts(n int) benchAPIOptions {
	o.duration = time.Duration(float64(n) / o.badRate * float64(time.Second))
	o.requests = math.MaxInt32
	return o
}

func (r benchAPIResult) rate() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// add sums the counts of two runs (not their percentiles).
func (r benchAPIResult) add(o benchAPIResult) benchAPIResult {
	r.Requests += o.Requests
	r.Errors += o.Errors
	if r.FirstError == nil {
		r.FirstError = o.FirstError
	}
	r.Elapsed += o.Elapsed
	r.CPU += o.CPU
	return r
}

func sumResults(rs []benchAPIResult) benchAPIResult {
	var s benchAPIResult
	for _, r := range rs {
		s = s.add(r)
	}
	return s
}

func medianP99(rs []benchAPIResult) time.Duration {
	ds := make([]time.Duration, len(rs))
	for i, r := range rs {
		ds[i] = r.P99
	}
	return benchMedian(ds).Round(100 * time.Microsecond)
}

func (f floodResult) add(o floodResult) floodResult {
	f.Sent += o.Sent
	f.Answered += o.Answered
	f.Unauthorized += o.Unauthorized
	f.TooMany += o.TooMany
	f.Accepted += o.Accepted
	f.Other += o.Other
	f.Failed += o.Failed
	f.Elapsed += o.Elapsed
	f.MaxLate = max(f.MaxLate, o.MaxLate)
	return f
}
