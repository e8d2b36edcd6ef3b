// Package vulndb is rung's offline vulnerability database: OSV records
// (the format of osv.dev's per-ecosystem all.zip exports) imported by the
// operator and looked up by ecosystem and package name during image scans.
//
// The database is one bbolt file. bbolt is already rung's embedded store;
// it gives an import that is one transaction (a failed or interrupted
// import leaves the previous database intact, and readers never see half
// an import), crash safety, and lookups that are a B+tree seek in a
// memory-mapped file, so `rung check image` needs no start-up load of
// 100,000 records. A flat indexed file would need its own atomic-replace,
// locking and merge logic for incremental imports.
//
// Layout: bucket "pkg" maps ECOSYSTEM \x00 NAME \x00 ID to the JSON of one
// Advisory, so a lookup is one prefix scan; bucket "vuln" maps ID to the
// record's modified time and its "pkg" keys, so re-importing a changed or
// withdrawn record replaces or removes exactly its old advisories.
package vulndb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors callers can check with errors.Is.
var (
	// ErrInvalidEntry is wrapped for an OSV record rung cannot use.
	ErrInvalidEntry = errors.New("invalid OSV entry")
	// ErrNoDatabase is returned by Open for a missing database in read-only mode.
	ErrNoDatabase = errors.New("no vulnerability database")
)

var (
	bucketPkg  = []byte("pkg")
	bucketVuln = []byte("vuln")
	bucketMeta = []byte("meta")
	keyUpdated = []byte("updated")
)

// DB is an open vulnerability database. It is safe for concurrent use.
type DB struct {
	bolt *bolt.DB
}

// Options configure Open.
type Options struct {
	// ReadOnly opens an existing database for lookups only; several
	// readers may share it, and a missing file is ErrNoDatabase.
	ReadOnly bool
	// Timeout bounds the wait for the file lock held by an import; zero
	// means 10 seconds.
	Timeout time.Duration
}

type key struct{ ecosystem, name string }

func (k key) prefix() []byte { return []byte(k.ecosystem + "\x00" + k.name + "\x00") }

// vulnRecord is what bucket "vuln" keeps per ID.
type vulnRecord struct {
	Modified time.Time `json:"modified"`
	Keys     []string  `json:"keys"`
}

// Open opens (or, unless read-only, creates) the database at path.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open %s: %w (import one with rung vulndb import)", path, ErrNoDatabase)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open vulnerability database: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: opts.ReadOnly, Timeout: opts.Timeout})
	if err != nil {
		return nil, fmt.Errorf("open vulnerability database %s: %w", path, err)
	}
	if !opts.ReadOnly {
		err = b.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketPkg, bucketVuln, bucketMeta} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("open vulnerability database %s: %w", path, err)
		}
	}
	return &DB{bolt: b}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.bolt.Close() }

// Advisories returns the advisories stored for package name in ecosystem,
// by ID.
func (d *DB) Advisories(ctx context.Context, ecosystem, name string) ([]Advisory, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Advisory
	err := d.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPkg)
		if b == nil {
			return nil
		}
		prefix := key{ecosystem, name}.prefix()
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var a Advisory
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("advisory %q: %w", k, err)
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up %s %s: %w", ecosystem, name, err)
	}
	return out, nil
}

// Stats describes the database.
type Stats struct {
	Vulnerabilities int       `json:"vulnerabilities"`
	Advisories      int       `json:"advisories"`
	Updated         time.Time `json:"updated"`
}

// Stats counts the records.
func (d *DB) Stats() (Stats, error) {
	var s Stats
	err := d.bolt.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketVuln); b != nil {
			s.Vulnerabilities = b.Stats().KeyN
		}
		if b := tx.Bucket(bucketPkg); b != nil {
			s.Advisories = b.Stats().KeyN
		}
		if b := tx.Bucket(bucketMeta); b != nil {
			if v := b.Get(keyUpdated); v != nil {
				_ = s.Updated.UnmarshalText(v)
			}
		}
		return nil
	})
	return s, err
}

// ImportStats counts what an import did.
type ImportStats struct {
	Read      int `json:"read"`      // records read
	Added     int `json:"added"`     // new or changed records stored
	Unchanged int `json:"unchanged"` // records already stored with the same or a later modified time
	Withdrawn int `json:"withdrawn"` // records removed because they are withdrawn
	Skipped   int `json:"skipped"`   // records without an affected package rung can match
}

// Put stores entries in one transaction: new records are added, records
// with a later modified time replace the stored ones, withdrawn records are
// removed. now is recorded as the update time. Keys are written in sorted
// order, which keeps a 100,000-record import to seconds (bbolt inserts
// into a page in order; random order moves the page's tail every time).
func (d *DB) Put(ctx context.Context, entries []*Entry, now time.Time) (ImportStats, error) {
	var st ImportStats
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		pkgs, vulns, meta := tx.Bucket(bucketPkg), tx.Bucket(bucketVuln), tx.Bucket(bucketMeta)
		var pkgKV, vulnKV []kv
		for i, e := range entries {
			if i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			st.Read++
			p, v, err := prepare(pkgs, vulns, e, &st)
			if err != nil {
				return fmt.Errorf("%s: %w", e.ID, err)
			}
			pkgKV = append(pkgKV, p...)
			vulnKV = append(vulnKV, v...)
		}
		for _, w := range []struct {
			b   *bolt.Bucket
			kvs []kv
		}{{pkgs, pkgKV}, {vulns, vulnKV}} {
			slices.SortFunc(w.kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
			w.b.FillPercent = 0.9
			for _, x := range w.kvs {
				if err := w.b.Put(x.k, x.v); err != nil {
					return err
				}
			}
		}
		ts, _ := now.UTC().MarshalText()
		return meta.Put(keyUpdated, ts)
	})
	if err != nil {
		return ImportStats{}, fmt.Errorf("import: %w", err)
	}
	return st, nil
}

type kv struct{ k, v []byte }

// prepare removes what the database holds for e if e replaces it, and
// returns the keys and values to write for e.
func prepare(pkgs, vulns *bolt.Bucket, e *Entry, st *ImportStats) (pkgKV, vulnKV []kv, err error) {
	id := []byte(e.ID)
	if old := vulns.Get(id); old != nil {
		var rec vulnRecord
		if err := json.Unmarshal(old, &rec); err != nil {
			return nil, nil, err
		}
		if e.Withdrawn == nil && !e.Modified.After(rec.Modified) {
			st.Unchanged++
			return nil, nil, nil
		}
		for _, k := range rec.Keys {
			if err := pkgs.Delete([]byte(k)); err != nil {
				return nil, nil, err
			}
		}
		if err := vulns.Delete(id); err != nil {
			return nil, nil, err
		}
	}
	if e.Withdrawn != nil {
		st.Withdrawn++
		return nil, nil, nil
	}
	advs := e.advisories()
	if len(advs) == 0 {
		st.Skipped++
		return nil, nil, nil
	}
	rec := vulnRecord{Modified: e.Modified}
	for k, a := range advs {
		v, err := json.Marshal(a)
		if err != nil {
			return nil, nil, err
		}
		pk := append(k.prefix(), id...)
		pkgKV = append(pkgKV, kv{pk, v})
		rec.Keys = append(rec.Keys, string(pk))
	}
	slices.Sort(rec.Keys)
	v, err := json.Marshal(rec)
	if err != nil {
		return nil, nil, err
	}
	st.Added++
	return pkgKV, []kv{{id, v}}, nil
}
