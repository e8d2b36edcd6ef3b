package bolt

import (
	"context"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"rung.dev/rung/internal/store"
)

// watchBatch bounds how many history records one read transaction of a
// watch scans, so that a watch catching up never holds a transaction (and
// bbolt's file growth) for long.
const watchBatch = 512

// watchBuffer is the capacity of a watch's channel.
const watchBuffer = 64

// Watch implements store.Watcher. Events come from the history bucket, so
// a watch can start from any revision that is not yet compacted and a
// slow reader never blocks writers: it reads history at its own pace.
func (s *Store) Watch(ctx context.Context, dir string, from int64) (<-chan store.Event, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	prefix, err := store.WatchPrefix(dir, from)
	if err != nil {
		return nil, err
	}
	// "Now" is fixed before Watch returns, so that every change committed
	// after it is delivered. History older than the store keeps ends the
	// watch with ErrCompacted, on the channel.
	if from == 0 {
		err := s.view(func(tx *bbolt.Tx) error {
			rev, err := s.counter(tx, metaRevision)
			from = rev + 1
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("watch %q: %w", dir, err)
		}
	}
	s.closing.Lock()
	defer s.closing.Unlock()
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	ch := make(chan store.Event, watchBuffer)
	s.watches.Add(1)
	go func() {
		defer s.watches.Done()
		defer close(ch)
		if err := s.follow(ctx, prefix, from, ch); err != nil {
			select {
			case ch <- store.Event{Err: fmt.Errorf("watch %q: %w", dir, err)}:
			default: // the reader is not keeping up; closing says enough
			}
		}
	}()
	return ch, nil
}

// follow sends history from revision next on, then waits for commits.
// It returns nil when ctx is done, store.ErrClosed when the store closes.
func (s *Store) follow(ctx context.Context, prefix string, next int64, ch chan<- store.Event) error {
	for {
		wake := s.changes() // before reading, so no commit is missed
		for {
			evs, last, full, err := s.readHistory(prefix, next)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				select {
				case ch <- ev:
				case <-ctx.Done():
					return nil
				case <-s.done:
					return store.ErrClosed
				}
			}
			if last >= next {
				next = last + 1
			}
			if !full {
				break
			}
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil
		case <-s.done:
			return store.ErrClosed
		}
	}
}

// readHistory reads up to watchBatch history records from revision next
// and returns those below prefix, the last revision it read completely
// and whether it stopped because of the batch limit.
func (s *Store) readHistory(prefix string, next int64) (evs []store.Event, last int64, full bool, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		compacted, err := s.counter(tx, metaCompacted)
		if err != nil {
			return err
		}
		if next <= compacted {
			return fmt.Errorf("fell behind to revision %d, history starts at %d: %w", next, compacted+1, store.ErrCompacted)
		}
		c := tx.Bucket([]byte(bucketHistory)).Cursor()
		n := 0
		for k, raw := c.Seek(eventKey(next, 0)); k != nil; k, raw = c.Next() {
			rev := int64(binary.BigEndian.Uint64(k))
			if n >= watchBatch && rev != last {
				full = true
				return nil
			}
			ev, ok, err := s.rec.decodeEventUnder(k, raw, prefix)
			if err != nil {
				return err
			}
			n++
			last = rev
			if ok {
				evs = append(evs, ev)
			}
		}
		return nil
	})
	return evs, last, full, err
}
