package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"rung.dev/rung/internal/store"
)

// maxProblems bounds how many problems an integrity report lists.
const maxProblems = 10

// Check walks the whole store: every live value and history record must
// pass its checksum, the revision counter must be ahead of every record,
// and bbolt's own page-level consistency check must pass. It returns nil
// or one error wrapping store.ErrCorrupt that lists the first problems and
// names the file. Open runs it unless Options.SkipCheck.
func (s *Store) Check(ctx context.Context) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("check %s: %w", s.path, err)
	}
	return nil
}

// check is Check without the file name (Open adds it).
func (s *Store) check(ctx context.Context) error {
	var problems []string
	add := func(format string, args ...any) {
		p := fmt.Sprintf(format, args...)
		problems = append(problems, strings.TrimSuffix(p, ": "+store.ErrCorrupt.Error()))
	}
	err := s.view(func(tx *bbolt.Tx) error {
		rev, err := s.counter(tx, metaRevision)
		if err != nil {
			add("revision counter: %v", err)
		}
		compacted, err := s.counter(tx, metaCompacted)
		if err != nil {
			add("compaction counter: %v", err)
		}
		want, err := s.readDigest(tx)
		if err != nil {
			add("%v", err)
		}
		var got digest
		n := 0
		err = tx.Bucket([]byte(bucketKV)).ForEach(func(k, raw []byte) error {
			got.kv.add(raw)
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if verr := store.ValidateKey(string(k)); verr != nil {
				add("key %.80q: not a valid key", k)
				return nil
			}
			_, r, _, err := s.rec.unseal(k, raw, kindValue)
			switch {
			case err != nil:
				add("%v", err)
			case r > rev:
				add("key %q: revision %d is ahead of the store's %d", k, r, rev)
			}
			return nil
		})
		if err != nil {
			return err
		}
		last := compacted
		err = tx.Bucket([]byte(bucketHistory)).ForEach(func(k, raw []byte) error {
			got.hist.add(raw)
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			ev, err := s.rec.decodeEvent(k, raw)
			switch {
			case err != nil:
				add("%v", err)
			case ev.Value.Revision < last || ev.Value.Revision <= compacted || ev.Value.Revision > rev:
				add("history %x: revision %d out of order (compacted %d, previous %d, store %d)", k, ev.Value.Revision, compacted, last, rev)
			default:
				last = ev.Value.Revision
			}
			return nil
		})
		if err != nil {
			return err
		}
		if got.kv != want.kv {
			add("values: %d records (digest %08x), the store's digest says %d (%08x): records lost or changed", got.kv.count, got.kv.xor, want.kv.count, want.kv.xor)
		}
		if got.hist != want.hist {
			add("history: %d records (digest %08x), the store's digest says %d (%08x): records lost or changed", got.hist.count, got.hist.xor, want.hist.count, want.hist.xor)
		}
		// bbolt's check faults on its own goroutine on some damage; run it
		// only on a file whose pages walkPages has vouched for.
		if s.walked {
			for err := range tx.Check() {
				add("bbolt: %v", err)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrCorrupt) {
		return err
	}
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) == 0 {
		return nil
	}
	for _, p := range problems {
		s.log.Error("store integrity problem", "path", s.path, "problem", p)
	}
	n, more := len(problems), ""
	if n > maxProblems {
		more = fmt.Sprintf("; and %d more", len(problems)-maxProblems)
		problems = problems[:maxProblems]
	}
	return fmt.Errorf("integrity check: %w: %d problem(s): %s%s", store.ErrCorrupt, n, strings.Join(problems, "; "), more)
}

// bbolt's on-disk meta page (format version 2), read here to check the
// file's size before bbolt maps it: bbolt trusts the size and would fault
// on pages past the end of a truncated file.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16 // id(8) flags(2) count(2) overflow(4)
	metaSumOffset  = 56 // magic version pageSize flags root(16) freelist pgid txid
)

type boltMeta struct {
	pageSize uint32
	root     uint64 // the root bucket's page
	freelist uint64
	pgid     uint64 // high water mark: pages in use are below it
	txid     uint64
}

// readMeta decodes and validates the meta page at the start of b.
func readMeta(b []byte) (boltMeta, bool) {
	if len(b) < pageHeaderSize+metaSumOffset+8 {
		return boltMeta{}, false
	}
	m := b[pageHeaderSize:]
	ne := binary.NativeEndian
	if ne.Uint32(m[0:]) != boltMagic || ne.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:metaSumOffset])
	if h.Sum64() != ne.Uint64(m[metaSumOffset:]) {
		return boltMeta{}, false
	}
	return boltMeta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}, true
}

// checkFile verifies, before bbolt opens path, that at least one meta page
// is valid and that the file is as long as the newest valid meta page
// says; with deep, it also walks the page structure (walkPages).
func checkFile(path string, size int64, deep bool, log *slog.Logger) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 2<<16)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read meta pages: %w", err)
	}
	buf = buf[:n]
	m0, ok0 := readMeta(buf)
	pageSize := os.Getpagesize()
	if ok0 && m0.pageSize >= 512 && m0.pageSize <= 1<<16 {
		pageSize = int(m0.pageSize)
	}
	var m1 boltMeta
	ok1 := false
	if len(buf) > pageSize {
		m1, ok1 = readMeta(buf[pageSize:])
	}
	if ok0 != ok1 {
		// Normal after a crash during a commit that was never
		// acknowledged; after anything else it means the newest commit
		// is lost, so say so.
		log.Warn("store: one bbolt meta page is invalid; using the other", "path", path, "meta0_valid", ok0, "meta1_valid", ok1)
	}
	var m boltMeta
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		m = m1
	case ok0:
		m = m0
	default:
		return fmt.Errorf("no valid bbolt meta page in %d bytes: %w", size, store.ErrCorrupt)
	}
	if m.pageSize < 512 || m.pageSize > 1<<16 || m.pageSize&(m.pageSize-1) != 0 {
		return fmt.Errorf("meta page: page size %d: %w", m.pageSize, store.ErrCorrupt)
	}
	if need := int64(m.pgid) * int64(m.pageSize); size < need {
		return fmt.Errorf("file is %d bytes but its meta page (txid %d) needs %d: truncated: %w", size, m.txid, need, store.ErrCorrupt)
	}
	if deep {
		return walkPages(path, m)
	}
	return nil
}
