package bolt

import (
	"bytes"
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"rung.dev/rung/internal/store"
)

// ListPage implements store.Pager. bbolt keeps only the current value of
// a key, so a page can be read "as of" an earlier revision only when
// nothing below dir changed since: the history bucket says whether it
// did, in the same read transaction as the page.
func (s *Store) ListPage(ctx context.Context, dir, after string, limit int, rev int64) (store.Page, error) {
	if err := s.usable(ctx); err != nil {
		return store.Page{}, err
	}
	prefix, err := store.CheckPage(dir, after, limit, rev)
	if err != nil {
		return store.Page{}, err
	}
	var page store.Page
	err = s.view(func(tx *bbolt.Tx) error {
		cur, err := s.counter(tx, metaRevision)
		if err != nil {
			return err
		}
		page.Revision = cur
		if rev != 0 && rev < cur {
			if err := s.unchangedSince(tx, prefix, rev); err != nil {
				return err
			}
			page.Revision = rev
		} else if rev > cur {
			return fmt.Errorf("revision %d is in the future (now %d): %w", rev, cur, store.ErrInvalid)
		}
		c := tx.Bucket([]byte(bucketKV)).Cursor()
		p := []byte(prefix)
		k, raw := c.Seek(p)
		if after != "" {
			k, raw = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, raw = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, raw = c.Next() {
			if len(page.Values) == limit {
				page.More = true
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			v, err := s.value(k, raw)
			if err != nil {
				return err
			}
			page.Values = append(page.Values, v)
		}
		return nil
	})
	if err != nil {
		return store.Page{}, fmt.Errorf("list page %q: %w", dir, err)
	}
	return page, nil
}

// unchangedSince fails with ErrCompacted when a key below prefix changed
// after revision rev, or when history no longer reaches back to it.
func (s *Store) unchangedSince(tx *bbolt.Tx, prefix string, rev int64) error {
	compacted, err := s.counter(tx, metaCompacted)
	if err != nil {
		return err
	}
	if rev < compacted {
		return fmt.Errorf("revision %d is older than the history kept (from %d): %w", rev, compacted+1, store.ErrCompacted)
	}
	c := tx.Bucket([]byte(bucketHistory)).Cursor()
	for k, raw := c.Seek(eventKey(rev+1, 0)); k != nil; k, raw = c.Next() {
		ev, ok, err := s.rec.decodeEventUnder(k, raw, prefix)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("%s changed at revision %d, after %d: %w", ev.Value.Key, ev.Value.Revision, rev, store.ErrCompacted)
		}
	}
	return nil
}
