package bolt_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/bolt"
)

// crashEnv, when set, makes the test binary a crash child: it writes to
// the store in the directory it names until it is killed.
const crashEnv = "RUNG_BOLT_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		os.Exit(crashChild(dir, os.Getenv("RUNG_BOLT_CRASH_ROUND")))
	}
	os.Exit(m.Run())
}

// crashValue is the value written at key: its own key, padded to a size
// that varies with the key, so that a wrong or torn value shows.
func crashValue(key string) []byte {
	n := 64 + len(key)*37%3000
	return bytes.Repeat([]byte(key+"|"), n/len(key)+1)[:n]
}

// crashChild writes with four goroutines and prints each acknowledged
// write as "put KEY" (a Create) or "count W N" (a Txn that also moved
// writer W's counter to N by compare-and-swap), never returning.
func crashChild(dir, round string) int {
	s, err := bolt.Open(dir, bolt.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 3
	}
	ctx := context.Background()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...) // unbuffered: printed means acknowledged
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			counter := fmt.Sprintf("/crash/counter/w%d", w)
			for i := 0; ; i++ {
				key := fmt.Sprintf("/crash/r%s/w%d/k%06d", round, w, i)
				if i%5 != 4 {
					if _, err := s.Put(ctx, key, crashValue(key), store.Create); err != nil {
						fmt.Fprintln(os.Stderr, "child put:", err)
						os.Exit(4)
					}
					say("put %s", key)
					continue
				}
				v, err := s.Get(ctx, counter)
				n, rev := 0, store.Create
				if err == nil {
					n, _ = strconv.Atoi(string(v.Data))
					rev = v.Revision
				} else if !errors.Is(err, store.ErrNotFound) {
					fmt.Fprintln(os.Stderr, "child get:", err)
					os.Exit(4)
				}
				if _, err := s.Txn(ctx, store.PutOp(key, crashValue(key), store.Create), store.PutOp(counter, []byte(strconv.Itoa(n+1)), rev)); err != nil {
					fmt.Fprintln(os.Stderr, "child txn:", err)
					os.Exit(4)
				}
				say("put %s", key)
				say("count %d %d", w, n+1)
			}
		})
	}
	wg.Wait()
	return 0
}

// TestCrashLosesNoAcknowledgedWrite kill -9s a writing child process at
// random moments, twenty times, and after each reopens the store (with
// its full integrity check) and finds every write the child had
// acknowledged, intact.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	const rounds = 20
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	acked := map[string]bool{}
	counts := map[string]int{}
	for round := range rounds {
		waitFor := 1 + rng.IntN(120) // acknowledged writes before the kill
		lines := runAndKill(t, dir, round, waitFor, time.Duration(rng.IntN(15))*time.Millisecond)
		for _, l := range lines {
			switch f := strings.Fields(l); {
			case len(f) == 2 && f[0] == "put":
				acked[f[1]] = true
			case len(f) == 3 && f[0] == "count":
				n, _ := strconv.Atoi(f[2])
				counts["/crash/counter/w"+f[1]] = max(counts["/crash/counter/w"+f[1]], n)
			default:
				t.Fatalf("round %d: child printed %q", round, l)
			}
		}

		s, err := bolt.Open(dir, bolt.Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		for k := range acked {
			v, err := s.Get(t.Context(), k)
			if err != nil {
				t.Fatalf("round %d: acknowledged %s: %v", round, k, err)
			}
			if !bytes.Equal(v.Data, crashValue(k)) {
				t.Fatalf("round %d: acknowledged %s has a wrong value", round, k)
			}
		}
		for k, n := range counts {
			v, err := s.Get(t.Context(), k)
			if err != nil {
				t.Fatalf("round %d: counter %s: %v", round, k, err)
			}
			// A Txn can commit and be killed before it is printed: at
			// least the acknowledged count, never less.
			if got, _ := strconv.Atoi(string(v.Data)); got < n {
				t.Fatalf("round %d: counter %s = %d, acknowledged %d", round, k, got, n)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d acks; %d acknowledged keys verified", round, waitFor, len(acked))
	}
}

// runAndKill starts a crash child on dir, kill -9s it after it has
// acknowledged waitFor writes and a further delay, and returns every
// complete line it printed.
func runAndKill(t *testing.T, dir string, round, waitFor int, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir, "RUNG_BOLT_CRASH_ROUND="+strconv.Itoa(round))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []string
		ready = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			if n++; n == waitFor {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-done:
		cmd.Wait()
		t.Fatalf("round %d: child exited early: %s", round, stderr.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("round %d: child acknowledged fewer than %d writes in 60s: %s", round, waitFor, stderr.String())
	}
	// While the child runs, the directory is its own.
	if s, err := bolt.Open(dir, bolt.Options{}); err == nil {
		s.Close()
		t.Fatalf("round %d: opened the store while the child had it", round)
	} else if !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", cmd.Process.Pid)) {
		t.Fatalf("round %d: Open while the child has the store: %v, want ErrLocked naming pid %d", round, err, cmd.Process.Pid)
	}
	time.Sleep(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done // the pipe closes when the child is gone
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child did not die of SIGKILL (%v): %s", round, err, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	// Each line was one write(2) of less than PIPE_BUF bytes: lines are
	// whole, even the last.
	return lines
}
