package runtime_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

// eachDriver runs f with a fresh driver of each tier in directory dir.
func eachDriver(t *testing.T, f func(t *testing.T, newDriver func() *runtime.OCI, mk drivertest.BundleFunc)) {
	drivertest.RequireRoot(t)
	for _, kind := range []string{"runc", "runsc"} {
		t.Run(kind, func(t *testing.T) {
			drivertest.RequireBinary(t, kind)
			dir := filepath.Join(drivertest.SearchableTempDir(t), kind)
			newDriver := func() *runtime.OCI { return drivertest.NewOCI(t, kind, dir) }
			f(t, newDriver, drivertest.Busybox(drivertest.Range(t, 3)))
		})
	}
}

// A file and a terminal given to `rung run` keep their owner and mode (runsc
// would chown what it is handed to its sandbox user), a header written
// before stays (the output lands at the file's offset), and the output is
// whole (a file given to runsc used to lose its end).
func TestRunCallerFilesUntouched(t *testing.T) {
	eachDriver(t, func(t *testing.T, newDriver func() *runtime.OCI, mk drivertest.BundleFunc) {
		d := newDriver()
		path := filepath.Join(t.TempDir(), "out")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("HEADER\n"); err != nil {
			t.Fatal(err)
		}
		master, slave, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer master.Close()
		termBefore := owner(t, slave.Name())
		fileBefore := owner(t, path)
		got := make(chan string, 1)
		go func() {
			var b strings.Builder
			buf := make([]byte, 4096)
			for {
				n, err := master.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					got <- b.String()
					return
				}
			}
		}()
		const n = 30000 // ~170 KB: far past any pipe buffer
		exit, err := runtime.Run(t.Context(), d, "files", mk(t, "files", fmt.Sprintf("seq 1 %d; echo to-terminal >&2", n)),
			runtime.IO{Stdout: f, Stderr: slave})
		if err != nil || exit.Code != 0 {
			t.Fatalf("run = %+v, %v", exit, err)
		}
		slave.Close()
		if after := owner(t, path); after != fileBefore {
			t.Errorf("file: %s before, %s after", fileBefore, after)
		}
		if after := owner(t, slave.Name()); after != termBefore {
			t.Errorf("terminal %s: %s before, %s after", slave.Name(), termBefore, after)
		}
		var want strings.Builder
		want.WriteString("HEADER\n")
		for i := 1; i <= n; i++ {
			want.WriteString(strconv.Itoa(i) + "\n")
		}
		b, _ := os.ReadFile(path)
		if string(b) != want.String() {
			t.Errorf("file holds %d bytes (ends %q), want %d ending %q", len(b), tail(string(b)), want.Len(), tail(want.String()))
		}
		if s := <-got; !strings.Contains(s, "to-terminal") {
			t.Errorf("terminal got %q, want to-terminal", s)
		}
	})
}

func tail(s string) string { return s[max(0, len(s)-20):] }

func owner(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d %v", st.Uid, st.Gid, fi.Mode())
}

func readAll(t *testing.T, d *runtime.OCI, id string, o logfile.ReadOptions) (string, error) {
	t.Helper()
	rc, err := d.ReadLogs(t.Context(), id, o)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func waitLog(t *testing.T, d *runtime.OCI, id, want string) string {
	t.Helper()
	var s string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s, _ = readAll(t, d, id, logfile.ReadOptions{})
		if strings.Contains(s, want) {
			return s
		}
	}
	t.Fatalf("log of %s never showed %q: %q", id, want, s)
	return ""
}

// A deleted container's log is the previous one until the next run's is
// deleted; a follower ends when the run's log is retired; PurgeLogs
// deletes them all.
func TestLogsPreviousAndPurge(t *testing.T) {
	eachDriver(t, func(t *testing.T, newDriver func() *runtime.OCI, mk drivertest.BundleFunc) {
		d := newDriver()
		ctx := t.Context()
		const id = "prev"
		if _, err := d.ReadLogs(ctx, id, logfile.ReadOptions{Previous: true}); !errors.Is(err, runtime.ErrNotFound) {
			t.Fatalf("previous before any run = %v, want ErrNotFound", err)
		}
		for run := 1; run <= 2; run++ {
			dir := mk(t, fmt.Sprintf("%s-%d", id, run), fmt.Sprintf("echo run%d; sleep 60", run))
			drivertest.Started(t, d, id, dir)
			waitLog(t, d, id, fmt.Sprintf("run%d", run))
			follow, err := d.ReadLogs(ctx, id, logfile.ReadOptions{Follow: true})
			if err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(follow).ReadString('\n'); err != nil || line != fmt.Sprintf("run%d\n", run) {
				t.Fatalf("follow: %q, %v", line, err)
			}
			if err := d.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			if rest, err := io.ReadAll(follow); err != nil || len(rest) != 0 {
				t.Errorf("follower after delete: %q, %v; want EOF", rest, err)
			}
			if _, err := d.Logs(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
				t.Errorf("current log after delete = %v, want ErrNotFound", err)
			}
			if s, err := readAll(t, d, id, logfile.ReadOptions{Previous: true}); err != nil || s != fmt.Sprintf("run%d\n", run) {
				t.Errorf("previous after run %d = %q, %v", run, s, err)
			}
		}
		if !d.HasLogs(id) {
			t.Fatal("HasLogs = false with a previous log")
		}
		if err := d.PurgeLogs(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadLogs(ctx, id, logfile.ReadOptions{Previous: true}); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("previous after purge = %v, want ErrNotFound", err)
		}
		if d.HasLogs(id) {
			t.Error("HasLogs after purge")
		}
	})
}

// A replica keeps running and keeps its output while no process copies its
// log (the agent restarting): a driver opened again picks the copy up
// where it stopped, and no line is lost.
func TestLogsSurviveRestart(t *testing.T) {
	eachDriver(t, func(t *testing.T, newDriver func() *runtime.OCI, mk drivertest.BundleFunc) {
		d := newDriver()
		const id = "adopt"
		drivertest.Started(t, d, id, mk(t, id, "i=0; while true; do echo line $i; i=$((i+1)); usleep 20000; done"))
		waitLog(t, d, id, "line 5\n")
		d.DetachLogs(id)
		before, _ := readAll(t, d, id, logfile.ReadOptions{})
		time.Sleep(500 * time.Millisecond) // the replica writes into the FIFO meanwhile
		d2 := newDriver()
		k := strings.Count(before, "\n")
		s := waitLog(t, d2, id, fmt.Sprintf("line %d\n", k+40))
		for i, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			if l != fmt.Sprintf("line %d", i) {
				t.Fatalf("line %d of the log is %q (copy stopped after %d lines)", i, l, k)
			}
		}
		if st, err := d2.State(t.Context(), id); err != nil || st.Status != runtime.Running {
			t.Errorf("state = %+v, %v; want running", st, err)
		}
	})
}

// A replica's log is capped: the current file and one rotated segment, each
// at most the cap, and what is kept is the end of its output. A cap below
// the minimum is refused when the driver opens.
func TestLogCap(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	dir := filepath.Join(drivertest.SearchableTempDir(t), "runc")
	if _, err := runtime.NewRunc(runtime.Config{Dir: dir, LogMaxSize: 1000}); !errors.Is(err, logfile.ErrInvalid) || !strings.Contains(err.Error(), "LogMaxSize") {
		t.Fatalf("tiny cap: %v, want ErrInvalid naming LogMaxSize", err)
	}
	d, err := runtime.NewRunc(runtime.Config{Dir: dir, LogMaxSize: logfile.MinMaxSize})
	if err != nil {
		t.Fatal(err)
	}
	const id, n = "cap", 40000 // ~ 2.5 MB of records, 20 times the two files
	drivertest.Started(t, d, id, drivertest.Busybox(drivertest.Range(t, 4))(t, id, fmt.Sprintf("seq 1 %d; echo done; sleep 60", n)))
	s := waitLog(t, d, id, "done\n")
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	lines = lines[:len(lines)-1] // done
	first, err := strconv.Atoi(lines[0])
	if err != nil || first <= 1 {
		t.Fatalf("first line kept %q: want a late one", lines[0])
	}
	for i, l := range lines {
		if l != strconv.Itoa(first+i) {
			t.Fatalf("line %d = %q, want %d", i, l, first+i)
		}
	}
	if last := lines[len(lines)-1]; last != strconv.Itoa(n) {
		t.Errorf("last line %q, want %d", last, n)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", id, "current.log*"))
	if len(logs) != 2 {
		t.Errorf("log files %v, want current.log and current.log.1", logs)
	}
	for _, p := range logs {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > logfile.MinMaxSize {
			t.Errorf("%s: %d bytes, cap %d", p, fi.Size(), logfile.MinMaxSize)
		}
	}
}
