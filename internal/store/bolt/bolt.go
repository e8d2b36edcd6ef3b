// Package bolt is the embedded store.Store: one bbolt file in rung's data
// directory, for `rung up` on a single machine.
//
// Durability: every write is one bbolt transaction that is fsynced before
// the call returns (concurrent writes share a commit through bbolt's
// Batch), so a write that returned nil survives kill -9 and power loss.
// Integrity: every stored value carries a CRC-32C over its key, revision
// and data; a mismatch is returned as store.ErrCorrupt, never skipped.
// Open checks the file's size against its meta page, walks every record
// and runs bbolt's own consistency check before it accepts the file.
// Exclusion: a lock file in the directory keeps a second process (or a
// second Open in this one) out, naming the process that holds it.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"rung.dev/rung/internal/store"
)

// File names inside the data directory.
const (
	// DBFile is the bbolt database file.
	DBFile = "store.db"
	// LockFile holds the lock and the pid of the process that owns the
	// directory.
	LockFile = "store.lock"
)

// Bucket and meta key names.
const (
	bucketKV      = "kv"
	bucketHistory = "history"
	bucketMeta    = "meta"
	metaFormat    = "format"
	metaRevision  = "revision"
	metaCompacted = "compacted"
	formatV1      = "rung-store-v1"
)

// DefaultHistory is how many revisions of history Watch can replay by
// default.
const DefaultHistory = 10000

// ErrLocked means another process (or another Open in this one) has the
// data directory open.
var ErrLocked = errors.New("data directory in use")

// Options tune Open. The zero value is what `rung up` wants.
type Options struct {
	// ReadOnly opens an existing store for reading only, sharing the
	// directory with other readers but not with a writer.
	ReadOnly bool
	// SkipCheck skips the full integrity walk at open (the size and meta
	// checks still run). Reads still verify every record they return.
	SkipCheck bool
	// History is how many revisions of changes Watch can replay from;
	// older history is compacted. 0 means DefaultHistory.
	History int
	// Logger receives open-time reports; nil discards them.
	Logger *slog.Logger
}

// Store is a store.Store in a bbolt file. It is safe for concurrent use.
type Store struct {
	db      *bbolt.DB
	lock    *os.File
	path    string
	rec     record
	history int64
	log     *slog.Logger
	walked  bool // the page structure was checked at open

	writers   atomic.Int32 // writes in progress
	closing   sync.Mutex   // orders starting watches against Close
	closed    atomic.Bool
	done      chan struct{} // closed by Close; ends watches
	closeOnce sync.Once
	closeErr  error
	watches   sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every commit

	tracked changes // the last write below each directory (changes.go)
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed, unless read-only) the store in dir,
// whose files are dir/store.db and dir/store.lock. A file that fails an
// integrity check is reported with an error that names it and wraps
// store.ErrCorrupt; a directory in use wraps ErrLocked.
func Open(dir string, opts Options) (*Store, error) {
	path := filepath.Join(dir, DBFile)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	lock, err := lockDir(filepath.Join(dir, LockFile), !opts.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s, err := open(path, lock, opts, log)
	if err != nil {
		unlockDir(lock)
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

func open(path string, lock *os.File, opts Options, log *slog.Logger) (*Store, error) {
	switch fi, err := os.Stat(path); {
	case errors.Is(err, os.ErrNotExist) && opts.ReadOnly:
		return nil, fmt.Errorf("no store here: %w", store.ErrNotFound)
	case errors.Is(err, os.ErrNotExist):
		if err := create(path); err != nil {
			return nil, fmt.Errorf("create: %w", err)
		}
	case err != nil:
		return nil, err
	default:
		// Stores are created whole (see create), so an empty or short
		// file is damage, not a new store.
		if err := checkFile(path, fi.Size(), !opts.SkipCheck, log); err != nil {
			return nil, err
		}
	}
	s := &Store{
		path:    path,
		lock:    lock,
		rec:     record{table: castagnoli()},
		history: int64(opts.History),
		log:     log,
		walked:  !opts.SkipCheck,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	if s.history <= 0 {
		s.history = DefaultHistory
	}
	err := guard(func() error {
		var err error
		s.db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: opts.ReadOnly})
		return err
	})
	if err != nil {
		if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
			err = fmt.Errorf("%w: %w", store.ErrCorrupt, err)
		}
		if errors.Is(err, berrors.ErrTimeout) {
			err = fmt.Errorf("%w: bbolt file lock: %w", ErrLocked, err)
		}
		return nil, err
	}
	s.db.MaxBatchDelay = time.Millisecond
	if err := s.checkFormat(); err != nil {
		s.db.Close()
		return nil, err
	}
	if !opts.SkipCheck {
		start := time.Now()
		if err := s.check(context.Background()); err != nil {
			s.db.Close()
			return nil, err
		}
		log.Debug("store integrity check passed", "path", path, "took", time.Since(start))
	}
	return s, nil
}

// guard runs fn with memory faults turned into panics, and turns any panic
// (bbolt panics on some corrupted pages) into an error wrapping
// store.ErrCorrupt.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: bbolt: %v", store.ErrCorrupt, p)
		}
	}()
	return fn()
}

// create makes a new, empty store at path atomically: it is initialized
// under a temporary name, synced, renamed into place and the directory
// synced, so that a crash leaves either no store or a whole one.
func create(path string) error {
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range []string{bucketKV, bucketHistory, bucketMeta} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(metaFormat), []byte(formatV1)); err != nil {
			return err
		}
		return writeDigest(record{table: castagnoli()}, tx, digest{}, 0)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func (s *Store) checkFormat() error {
	return s.view(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil || tx.Bucket([]byte(bucketKV)) == nil || tx.Bucket([]byte(bucketHistory)) == nil {
			return fmt.Errorf("not a rung store (missing buckets): %w", store.ErrCorrupt)
		}
		if f := meta.Get([]byte(metaFormat)); string(f) != formatV1 {
			return fmt.Errorf("unknown store format %.40q: %w", f, store.ErrCorrupt)
		}
		return nil
	})
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close ends open watches, waits for them, closes the file and releases
// the directory. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Lock()
		s.closed.Store(true)
		close(s.done)
		s.closing.Unlock()
		s.watches.Wait()
		s.closeErr = s.db.Close()
		unlockDir(s.lock)
	})
	return s.closeErr
}

// usable fails when the store is closed or ctx is done.
func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// view runs a read transaction under guard.
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	return mapErr(guard(func() error { return s.db.View(fn) }))
}

// mapErr turns bbolt's errors into store's.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("%w: %w", store.ErrClosed, err)
	case errors.Is(err, berrors.ErrDatabaseReadOnly), errors.Is(err, berrors.ErrTxNotWritable):
		return fmt.Errorf("store opened read-only: %w", store.ErrInvalid)
	}
	return err
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, key string) (store.Value, error) {
	if err := s.usable(ctx); err != nil {
		return store.Value{}, err
	}
	if err := store.ValidateKey(key); err != nil {
		return store.Value{}, fmt.Errorf("get: %w", err)
	}
	var v store.Value
	err := s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket([]byte(bucketKV)).Get([]byte(key))
		if raw == nil {
			return store.ErrNotFound
		}
		var err error
		v, err = s.value([]byte(key), raw)
		return err
	})
	if err != nil {
		return store.Value{}, fmt.Errorf("get %q: %w", key, err)
	}
	return v, nil
}

// value decodes a live record, copying out of bbolt's memory.
func (s *Store) value(bkey, raw []byte) (store.Value, error) {
	_, rev, data, err := s.rec.unseal(bkey, raw, kindValue)
	if err != nil {
		return store.Value{}, err
	}
	return store.Value{Key: string(bkey), Data: bytes.Clone(data), Revision: rev}, nil
}

// List implements store.Reader.
func (s *Store) List(ctx context.Context, dir string) ([]store.Value, int64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, 0, err
	}
	prefix, err := store.DirPrefix(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("list: %w", err)
	}
	var (
		out []store.Value
		rev int64
	)
	err = s.view(func(tx *bbolt.Tx) error {
		var err error
		if rev, err = s.counter(tx, metaRevision); err != nil {
			return err
		}
		c := tx.Bucket([]byte(bucketKV)).Cursor()
		p := []byte(prefix)
		for k, raw := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, raw = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			v, err := s.value(k, raw)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", dir, err)
	}
	return out, rev, nil
}

// counter reads a counter from the meta bucket (0 when it was never set).
func (s *Store) counter(tx *bbolt.Tx, name string) (int64, error) {
	raw := tx.Bucket([]byte(bucketMeta)).Get([]byte(name))
	if raw == nil {
		return 0, nil
	}
	_, n, _, err := s.rec.unseal([]byte(name), raw, kindCounter)
	return n, err
}

func (s *Store) setCounter(tx *bbolt.Tx, name string, n int64) error {
	return tx.Bucket([]byte(bucketMeta)).Put([]byte(name), s.rec.seal([]byte(name), kindCounter, n, nil))
}

// Put implements store.Writer.
func (s *Store) Put(ctx context.Context, key string, data []byte, expect int64) (int64, error) {
	return s.apply(ctx, true, store.PutOp(key, data, expect))
}

// Delete implements store.Writer.
func (s *Store) Delete(ctx context.Context, key string, expect int64) (int64, error) {
	return s.apply(ctx, true, store.DeleteOp(key, expect))
}

// Txn implements store.Writer.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	return s.apply(ctx, false, ops...)
}

// apply validates ops and commits them at one new revision; single says
// they are a lone Put or Delete (for error messages).
func (s *Store) apply(ctx context.Context, single bool, ops ...store.Op) (int64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	if err := store.Validate(single, ops); err != nil {
		return 0, err
	}
	var rev int64
	fn := func(tx *bbolt.Tx) error {
		// bbolt may run this on another goroutine: guard it there too.
		return guard(func() error {
			var err error
			rev, err = s.commit(tx, single, ops)
			return err
		})
	}
	// A lone writer commits at once; concurrent writers share commits
	// (and fsyncs) through bbolt's Batch, which waits up to
	// MaxBatchDelay to gather them.
	write := s.db.Update
	if s.writers.Add(1) > 1 {
		write = s.db.Batch
	}
	err := guard(func() error { return write(fn) })
	s.writers.Add(-1)
	if err != nil {
		return 0, mapErr(err)
	}
	s.tracked.record(rev, ops)
	s.notify()
	return rev, nil
}

// commit checks every precondition, then writes ops, their history and
// the new revision in tx.
func (s *Store) commit(tx *bbolt.Tx, single bool, ops []store.Op) (int64, error) {
	kv := tx.Bucket([]byte(bucketKV))
	for i, op := range ops {
		var cur int64
		if raw := kv.Get([]byte(op.Key)); raw != nil {
			_, r, _, err := s.rec.unseal([]byte(op.Key), raw, kindValue)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", op.Kind, op.Key, err)
			}
			cur = r
		}
		if err := store.CheckPrecondition(opIndex(single, i), op, cur); err != nil {
			return 0, err
		}
	}
	rev, err := s.counter(tx, metaRevision)
	if err != nil {
		return 0, err
	}
	if !slices.ContainsFunc(ops, func(op store.Op) bool { return op.Kind != store.OpCheck }) {
		return rev, nil // only checks: nothing changes, no new revision
	}
	rev++
	d, err := s.readDigest(tx)
	if err != nil {
		return 0, err
	}
	hist := tx.Bucket([]byte(bucketHistory))
	n := 0
	for _, op := range ops {
		if op.Kind == store.OpCheck {
			continue
		}
		k := []byte(op.Key)
		if old := kv.Get(k); old != nil {
			d.kv.remove(old)
		}
		var rec, ev []byte
		ek := eventKey(rev, n)
		if op.Kind == store.OpPut {
			rec = s.rec.seal(k, kindValue, rev, op.Data)
			d.kv.add(rec)
			err = kv.Put(k, rec)
			ev = s.rec.seal(ek, kindPut, rev, eventPayload(op.Key, op.Data))
		} else {
			err = kv.Delete(k)
			ev = s.rec.seal(ek, kindDelete, rev, eventPayload(op.Key, nil))
		}
		if err == nil {
			d.hist.add(ev)
			err = hist.Put(ek, ev)
		}
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", op.Kind, op.Key, err)
		}
		n++
	}
	if err := s.setCounter(tx, metaRevision, rev); err != nil {
		return 0, err
	}
	if err := s.compact(tx, rev, &d.hist); err != nil {
		return 0, err
	}
	return rev, writeDigest(s.rec, tx, d, rev)
}

// compact drops history older than s.history revisions, in steps of a
// tenth of it so that most commits do nothing.
func (s *Store) compact(tx *bbolt.Tx, rev int64, t *tally) error {
	done, err := s.counter(tx, metaCompacted)
	if err != nil {
		return err
	}
	limit := rev - s.history
	if limit-done < max(1, s.history/10) {
		return nil
	}
	hist := tx.Bucket([]byte(bucketHistory))
	var old [][]byte // deleting under a cursor would skip records
	c := hist.Cursor()
	for k, v := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= limit; k, v = c.Next() {
		old = append(old, bytes.Clone(k))
		t.remove(v)
	}
	for _, k := range old {
		if err := hist.Delete(k); err != nil {
			return err
		}
	}
	return s.setCounter(tx, metaCompacted, limit)
}

// opIndex is i, or -1 for a lone Put or Delete (see store.CheckPrecondition).
func opIndex(single bool, i int) int {
	if single {
		return -1
	}
	return i
}

// notify wakes every watch after a commit.
func (s *Store) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// changes returns the channel the next commit closes.
func (s *Store) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}
