package cli

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"rung.dev/rung/internal/testio"
)

// TestFlood: the bench's flood peer sends exactly its count of requests
// with a wrong token, open loop at its rate (the last one is not due
// before (count-1)/rate), over at most its connections, and counts the
// answers by kind: a wrong token accepted is counted as such, so the
// bench can fail on it.
func TestFlood(t *testing.T) {
	var n, bad atomic.Int64
	var mu sync.Mutex
	remotes := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes[r.RemoteAddr] = true
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer rung_not-a-token" {
			bad.Add(1)
		}
		switch i := n.Add(1); {
		case i <= 3:
			w.WriteHeader(http.StatusUnauthorized)
		case i == 4:
			w.WriteHeader(http.StatusOK) // accepted: must be reported
		case i == 5:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	const count, rate = 40, 200.0
	start := time.Now()
	dial := func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}
	got := flood(t.Context(), dial, srv.URL, count, rate, 4)
	if took, min := time.Since(start), time.Duration(float64(count-1)/rate*float64(time.Second)); took < min {
		t.Errorf("%d requests at %v/s took %v, less than the %v an open loop at that rate takes", count, rate, took, min)
	}
	want := floodResult{Sent: count, Answered: count, Unauthorized: 3, Accepted: 1, Other: 1, TooMany: count - 5}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(floodResult{}, "Elapsed", "MaxLate")); diff != "" {
		t.Errorf("flood counts (-want +got):\n%s", diff)
	}
	if n.Load() != count || bad.Load() != 0 {
		t.Errorf("the server saw %d requests (%d without the wrong token), want %d, all with it", n.Load(), bad.Load(), count)
	}
	if len(remotes) > 4 {
		t.Errorf("the flood used %d connections, want at most its 4 (kept alive)", len(remotes))
	}
	// A server that is gone: every request counted as unanswered.
	srv.Close()
	if got := flood(t.Context(), dial, srv.URL, 5, 1000, 2); got.Sent != 5 || got.Failed != 5 || got.Answered != 0 {
		t.Errorf("flood of a closed server = %+v, want 5 sent, 5 failed", got)
	}
}

// floodPeerArgsEnv carries the flood peer's arguments to
// TestFloodPeerChild, which stands for `rung bench api floodpeer` in
// TestBenchAPIFlood (os.Executable is the test binary there).
const floodPeerArgsEnv = "RUNG_TEST_FLOODPEER_ARGS"

func TestFloodPeerChild(t *testing.T) {
	args := os.Getenv(floodPeerArgsEnv)
	if args == "" {
		t.Skip("run by TestBenchAPIFlood")
	}
	cmd := newBenchFloodpeerCmd()
	cmd.SetArgs(strings.Split(args, "\t"))
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestBenchAPIFlood runs `rung bench api --bad-tokens` small against an
// embedded control plane, with its flood from a process of its own: the
// slices alternate, every request of the flood is sent and refused (401,
// then 429 once the address is over its failures), none accepted, and
// the audit log gains at most its one summary line.
func TestBenchAPIFlood(t *testing.T) {
	old := floodPeer
	t.Cleanup(func() { floodPeer = old })
	floodPeer = func(ctx context.Context, args ...string) (*exec.Cmd, error) {
		c := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFloodPeerChild$", "-test.count=1")
		c.Env = append(os.Environ(), floodPeerArgsEnv+"="+strings.Join(args, "\t"))
		return c, nil
	}
	var o, e testio.Buffer
	cmd := newBenchAPICmd()
	cmd.SetOut(&o)
	cmd.SetErr(&e)
	cmd.SetArgs([]string{"--clients", "4", "--bad-tokens", "800", "--bad-token-rate", "400"})
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("bench api --bad-tokens: %v\n%s\n%s", err, o.String(), e.String())
	}
	out := o.String()
	for _, want := range []string{"4 slices of 500ms", "slice 4: alone", "under the flood: applies/s", "bad tokens: 800 sent at 400/s offered", " 0 other, 0 unanswered, 0 accepted", "audit log: "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`(\d+) answered 401, (\d+) 429`).FindStringSubmatch(out); m == nil || m[1] == "0" || m[2] == "0" {
		t.Errorf("want both 401s and, past the failure allowance, 429s:\n%s", out)
	}
	if m := regexp.MustCompile(`audit log: (\d+) entries`).FindStringSubmatch(out); m == nil || len(m[1]) > 1 || m[1] > "1" {
		t.Errorf("the flood wrote more than one audit entry:\n%s", out)
	}
	t.Log(out)
}
