package logfile

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clock is a Writer clock that moves one second per call.
func clock(start time.Time) func() time.Time {
	t := start
	return func() time.Time { t = t.Add(time.Second); return t }
}

func read(t *testing.T, path string, o ReadOptions) string {
	t.Helper()
	rc, err := Open(t.Context(), path, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestRoundTrip(t *testing.T) {
	long := strings.Repeat("x", MaxLine*2+10)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		writes []struct {
			s Stream
			p string
		}
		o    ReadOptions
		want string
	}{
		{name: "lines of both streams", writes: ws(Stdout, "a\nb", Stderr, "err\n", Stdout, "c\n"), want: "a\nerr\nbc\n"},
		{name: "no newline at the end", writes: ws(Stdout, "one\ntwo"), want: "one\ntwo"},
		{name: "empty lines", writes: ws(Stdout, "\n\nx\n"), want: "\n\nx\n"},
		{name: "long line", writes: ws(Stdout, long+"\n"), want: long + "\n"},
		{name: "tail", writes: ws(Stdout, "1\n2\n3\n4\n"), o: ReadOptions{Tail: 2}, want: "3\n4\n"},
		{name: "tail past start", writes: ws(Stdout, "1\n"), o: ReadOptions{Tail: 5}, want: "1\n"},
		// Each Write takes one tick: "1" at +1s, "2" at +2s, "3" at +3s.
		{name: "since", writes: ws(Stdout, "1\n", Stdout, "2\n", Stdout, "3\n"), o: ReadOptions{Since: base.Add(2 * time.Second)}, want: "2\n3\n"},
		{name: "timestamps", writes: ws(Stdout, "1\n", Stderr, "2\n"), o: ReadOptions{Timestamps: true},
			want: "2026-01-02T03:04:06.000000000Z 1\n2026-01-02T03:04:07.000000000Z 2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "current.log")
			w, err := Create(path, 0)
			if err != nil {
				t.Fatal(err)
			}
			w.now = clock(base)
			streams := map[Stream]io.WriteCloser{Stdout: w.Stream(Stdout), Stderr: w.Stream(Stderr)}
			for _, x := range tt.writes {
				if _, err := streams[x.s].Write([]byte(x.p)); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range streams {
				s.Close()
			}
			w.Close()
			if diff := cmp.Diff(tt.want, read(t, path, tt.o)); diff != "" {
				t.Errorf("read (-want +got):\n%s", diff)
			}
		})
	}
}

func ws(args ...any) []struct {
	s Stream
	p string
} {
	var out []struct {
		s Stream
		p string
	}
	for i := 0; i < len(args); i += 2 {
		out = append(out, struct {
			s Stream
			p string
		}{args[i].(Stream), args[i+1].(string)})
	}
	return out
}

// The file is in the kubelet's format, so its tools can read it.
func TestFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "current.log")
	w, _ := Create(path, 0)
	w.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)) }
	s := w.Stream(Stderr)
	s.Write([]byte("hi there\npart"))
	s.Close()
	w.Close()
	b, _ := os.ReadFile(path)
	want := "2026-01-02T02:04:05.000000006Z stderr F hi there\n2026-01-02T02:04:05.000000006Z stderr P part\n"
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
}

func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "current.log")
	if _, err := Create(path, MinMaxSize-1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cap below minimum: %v, want ErrInvalid", err)
	}
	w, err := Create(path, MinMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	s := w.Stream(Stdout)
	const n = 20000 // ~ 1 MB of records: many rotations
	for i := range n {
		if _, err := s.Write([]byte(strings.Repeat("y", i%50) + "|" + itoa(i) + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	total := int64(0)
	for _, p := range []string{path, path + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > MinMaxSize {
			t.Errorf("%s is %d bytes, cap %d", p, fi.Size(), MinMaxSize)
		}
		total += fi.Size()
	}
	if _, err := os.Stat(path + ".2"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a second rotated segment exists: %v", err)
	}
	// What is kept is the end of the output, in order, without gaps.
	lines := strings.Split(strings.TrimSuffix(read(t, path, ReadOptions{}), "\n"), "\n")
	if len(lines) < 100 {
		t.Fatalf("only %d lines kept of %d (%d bytes on disk)", len(lines), n, total)
	}
	first := n - len(lines)
	for i, l := range lines {
		if want := strings.Repeat("y", (first+i)%50) + "|" + itoa(first+i); l != want {
			t.Fatalf("line %d = %q, want %q", i, l, want)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestNoLog(t *testing.T) {
	if _, err := Open(t.Context(), filepath.Join(t.TempDir(), "x.log"), ReadOptions{}); !errors.Is(err, ErrNoLog) {
		t.Errorf("open missing = %v, want ErrNoLog", err)
	}
}

// Follow sees lines written after it started, across a rotation, and ends
// when the log is removed; also when its context ends.
func TestFollow(t *testing.T) {
	old := PollInterval
	PollInterval = 5 * time.Millisecond
	t.Cleanup(func() { PollInterval = old })
	path := filepath.Join(t.TempDir(), "current.log")
	w, err := Create(path, MinMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	s := w.Stream(Stdout)
	s.Write([]byte("before\n"))
	rc, err := Open(t.Context(), path, ReadOptions{Follow: true, Tail: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	expect := func(want string) {
		t.Helper()
		got, err := br.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("followed %q, %v; want %q", got, err, want)
		}
	}
	expect("before\n")
	s.Write([]byte("after\n"))
	expect("after\n")
	// Enough to rotate twice: the follower goes on in the new files.
	big := strings.Repeat("z", 1000)
	for i := range 150 {
		s.Write([]byte(big + itoa(i) + "\n"))
		expect(big + itoa(i) + "\n")
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("no rotation happened: %v", err)
	}
	w.Close()
	os.Remove(path)
	os.Remove(path + ".1")
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after removal: %q, %v; want EOF", rest, err)
	}

	// ctx ends the follower too.
	w2, _ := Create(path, 0)
	defer w2.Close()
	ctx, cancel := context.WithCancel(t.Context())
	rc2, err := Open(ctx, path, ReadOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc2); err != nil {
		t.Errorf("after cancel: %v", err)
	}
}
