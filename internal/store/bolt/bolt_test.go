package bolt_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/bolt"
	"rung.dev/rung/internal/store/storetest"
)

// open opens a store in dir and closes it when the test ends.
func open(t *testing.T, dir string, opts bolt.Options) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir(), bolt.Options{}) })
}

// TestLocked: a second Open of a directory in use fails, naming the
// holder; after Close it succeeds.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, bolt.Options{})
	_, err := bolt.Open(dir, bolt.Options{})
	if !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), "this process") {
		t.Fatalf("second Open: %v, want ErrLocked naming this process", err)
	}
	_, err = bolt.Open(dir, bolt.Options{ReadOnly: true})
	if !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("read-only Open while a writer holds it: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, bolt.Options{}).Close()
}

// TestInterruptedCreate: a store whose creation was interrupted (only the
// temporary file exists) is created afresh.
func TestInterruptedCreate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bolt.DBFile+".new"), []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, bolt.Options{})
	if _, err := s.Put(t.Context(), "/a", nil, store.Create); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, bolt.DBFile+".new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

// TestReadOnly: readers share a directory, read what was written, and
// cannot write.
func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	if _, err := bolt.Open(filepath.Join(dir, "none"), bolt.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only Open of a missing store succeeded")
	}
	w := open(t, dir, bolt.Options{})
	if _, err := w.Put(t.Context(), "/a", []byte("x"), store.Any); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r1 := open(t, dir, bolt.Options{ReadOnly: true})
	r2 := open(t, dir, bolt.Options{ReadOnly: true})
	for _, r := range []*bolt.Store{r1, r2} {
		if v, err := r.Get(t.Context(), "/a"); err != nil || string(v.Data) != "x" {
			t.Fatalf("Get = %q, %v", v.Data, err)
		}
	}
	if _, err := r1.Put(t.Context(), "/b", nil, store.Any); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Put on a read-only store: %v, want ErrInvalid", err)
	}
	// A copy of the file alone (a backup) opens read-only too.
	backup := t.TempDir()
	data, err := os.ReadFile(filepath.Join(dir, bolt.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(backup, bolt.DBFile), data, 0o600)
	if v, err := open(t, backup, bolt.Options{ReadOnly: true}).Get(t.Context(), "/a"); err != nil || string(v.Data) != "x" {
		t.Fatalf("Get from a backup = %q, %v", v.Data, err)
	}
}

// TestWatchHistory: history survives a restart, so a watch can resume
// from before it; history older than Options.History is compacted and a
// watch from there ends with ErrCompacted.
func TestWatchHistory(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, bolt.Options{History: 20})
	var revs []int64
	for i := range 50 {
		r, err := s.Put(t.Context(), fmt.Sprintf("/h/k%d", i%4), fmt.Appendf(nil, "%d", i), store.Any)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r)
	}
	s.Close()
	s = open(t, dir, bolt.Options{History: 20})

	ch, err := s.Watch(t.Context(), "/h", revs[45])
	if err != nil {
		t.Fatal(err)
	}
	for i := 45; i < 50; i++ {
		ev := <-ch
		if ev.Err != nil || ev.Value.Revision != revs[i] || string(ev.Value.Data) != fmt.Sprint(i) {
			t.Fatalf("event %d after reopen: %+v", i, ev)
		}
	}
	old, err := s.Watch(t.Context(), "/h", revs[0])
	if err != nil {
		t.Fatal(err)
	}
	ev, ok := <-old
	if !ok || !errors.Is(ev.Err, store.ErrCompacted) {
		t.Fatalf("watch from compacted history: %+v, %v; want ErrCompacted", ev, ok)
	}
	if _, ok := <-old; ok {
		t.Fatal("watch channel not closed after its error")
	}
}

// TestWatchSlowReader: a watcher that reads nothing does not hold up
// writers, and later receives everything in order.
func TestWatchSlowReader(t *testing.T) {
	s := open(t, t.TempDir(), bolt.Options{})
	ch, err := s.Watch(t.Context(), "/slow", 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300 // several times the channel's buffer
	ops := make([]store.Op, 0, n)
	for i := range n {
		ops = append(ops, store.PutOp(fmt.Sprintf("/slow/k%03d", i), nil, store.Any))
		if len(ops) == store.MaxTxnOps || i == n-1 {
			if _, err := s.Txn(t.Context(), ops...); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	for i := range n {
		ev := <-ch
		if ev.Err != nil || ev.Value.Key != fmt.Sprintf("/slow/k%03d", i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
}

// BenchmarkPut measures acknowledged (fsynced) writes, one writer at a
// time and from many goroutines, whose commits bbolt batches.
func BenchmarkPut(b *testing.B) {
	value := make([]byte, 512)
	b.Run("serial", func(b *testing.B) {
		s, err := bolt.Open(b.TempDir(), bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for i := 0; b.Loop(); i++ {
			if _, err := s.Put(b.Context(), fmt.Sprintf("/bench/k%d", i), value, store.Any); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		s, err := bolt.Open(b.TempDir(), bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.SetParallelism(25) // 50 writers on 2 cores
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Put(b.Context(), fmt.Sprintf("/bench/k%d", n.Add(1)), value, store.Any); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
