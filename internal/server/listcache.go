package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rung.dev/rung/internal/store"
)

// List snapshots (issue 13: twenty clients listing halved the writers).
// On a store that sees every write (the embedded one: store.ChangeTracker)
// a list's first page comes from an in-memory snapshot of the directory:
// its objects as of one store revision, already encoded as list items.
// A snapshot serves every list of its directory until a write below the
// directory returns; then the next list reads a new one, once for all the
// lists waiting meanwhile. So a list costs no store transaction and no
// encoding while the directory is unchanged, and concurrent listers of a
// changing directory share one read.
//
// Every page of a list comes from the snapshot its first page came from
// (the continue token names its revision), so the pages are consistent
// even when the directory changes between them. A snapshot is kept
// snapTTL, within snapBytes for all of them; a continue token whose
// snapshot is gone is served by the store at its revision if nothing
// below the directory changed since, and is 410 otherwise.
//
// A list still sees every write that returned before it began: a snapshot
// serves a list only when LastChange(dir) is at or before its revision.

const (
	// snapTTL is how long a snapshot serves lists and continue pages.
	snapTTL = 30 * time.Second
	// snapBytes bounds the encoded size of all snapshots kept.
	snapBytes = 32 << 20
	// snapItems bounds one snapshot: larger directories are read page by
	// page from the store, as on a store without change tracking.
	snapItems = 10000
)

// listSnap is one directory's objects as of one revision, each encoded
// as a list item.
type listSnap struct {
	dir  string
	rev  int64
	keys []string // sorted
	enc  []byte   // item i is enc[offs[i]:offs[i+1]], after a comma
	offs []int
	made time.Time
	// cost is what reading and encoding the snapshot took (without the
	// wait for the list gate): a page is charged its share of it.
	cost time.Duration
	// paged says a continue token names this snapshot: it is kept for
	// the later pages after a newer one replaces it.
	paged   atomic.Bool
	dropped bool // under listCache.mu
}

func (sn *listSnap) size() int { return len(sn.enc) + 64*len(sn.keys) }

// page is the JSON of at most limit items after the key after ("" for
// the first), in three parts to write one after the other: the items are
// the snapshot's own bytes, not a copy.
func (sn *listSnap) page(after string, limit int) pageBody {
	i := 0
	if after != "" {
		i, _ = slices.BinarySearch(sn.keys, after)
		if i < len(sn.keys) && sn.keys[i] == after {
			i++
		}
	}
	j := min(len(sn.keys), i+limit)
	cont := ""
	if j < len(sn.keys) {
		sn.paged.Store(true)
		cont = nextBelow(sn.dir, sn.keys[j-1], sn.rev)
	}
	var items []byte
	if j > i {
		items = sn.enc[sn.offs[i]+1 : sn.offs[j]] // without the first comma
	}
	var cost time.Duration
	if n := len(sn.keys); n > 0 {
		cost = sn.cost * time.Duration(j-i) / time.Duration(n)
	}
	return pageBody{[3][]byte{[]byte(listHead), items, appendListTail(nil, j > i, sn.rev, cont)}, cost}
}

// pageBody is a list page's JSON in parts, and its share of what reading
// its snapshot cost.
type pageBody struct {
	parts [3][]byte
	cost  time.Duration
}

func (b pageBody) bytes() []byte { return slices.Concat(b.parts[:]...) }

// write writes b as writeRaw would.
func (b pageBody) write(w http.ResponseWriter) {
	jsonHeaders(w)
	w.Header().Set("Content-Length", strconv.Itoa(len(b.parts[0])+len(b.parts[1])+len(b.parts[2])))
	w.WriteHeader(http.StatusOK)
	for _, p := range b.parts {
		if _, err := w.Write(p); err != nil {
			return // the client went away; nothing to do
		}
	}
}

// dirSnaps is what the cache holds for one directory.
type dirSnaps struct {
	cur      *listSnap           // the latest snapshot
	byRev    map[int64]*listSnap // every snapshot held, cur included
	building chan struct{}       // closed when the read in flight ends
	// large is when the directory was last found too large to snapshot.
	large time.Time
}

// listCache holds the snapshots of the directories listed lately.
type listCache struct {
	changes store.ChangeTracker
	now     func() time.Time
	// read reads a directory as of now, at most limit objects (More says
	// there are others), inside the list gate; took is the read's time
	// once in the gate.
	read func(ctx context.Context, dir string, limit int) (pg store.Page, took time.Duration, err error)

	mu    sync.Mutex
	dirs  map[string]*dirSnaps
	held  []*listSnap // oldest first; dropped ones leave lazily
	live  int         // of held, those not dropped
	bytes int
}

func newListCache(changes store.ChangeTracker, now func() time.Time, read func(context.Context, string, int) (store.Page, time.Duration, error)) *listCache {
	return &listCache{changes: changes, now: now, read: read, dirs: map[string]*dirSnaps{}}
}

// current returns a snapshot of dir that holds every write below it that
// returned before the call, reading one if needed (once for all callers
// waiting meanwhile). It returns nil when dir is too large to snapshot.
func (c *listCache) current(ctx context.Context, dir string) (*listSnap, error) {
	last := c.changes.LastChange(dir)
	for {
		c.mu.Lock()
		now := c.now()
		c.expire(now)
		d := c.dirs[dir]
		if d == nil {
			d = &dirSnaps{byRev: map[int64]*listSnap{}}
			c.dirs[dir] = d
		}
		if sn := d.cur; sn != nil && sn.rev >= last {
			c.mu.Unlock()
			return sn, nil
		}
		if !d.large.IsZero() && now.Sub(d.large) < snapTTL {
			c.mu.Unlock()
			return nil, nil
		}
		if ch := d.building; ch != nil {
			c.mu.Unlock()
			select {
			case <-ch:
				continue // its snapshot may do; if not (or it failed), read
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		d.building = ch
		c.mu.Unlock()

		// Read after LastChange was taken: the snapshot holds every write
		// that returned before this call.
		sn, large, err := c.build(ctx, dir)

		c.mu.Lock()
		d.building = nil
		close(ch)
		if err == nil {
			c.install(d, sn, large)
		}
		c.mu.Unlock()
		return sn, err
	}
}

// build reads and encodes a snapshot of dir (nil, true when dir holds
// more than snapItems objects).
func (c *listCache) build(ctx context.Context, dir string) (*listSnap, bool, error) {
	pg, took, err := c.read(ctx, dir, snapItems)
	if err != nil {
		return nil, false, err
	}
	start := time.Now()
	if pg.More {
		return nil, true, nil
	}
	n := 0
	for _, v := range pg.Values {
		n += len(v.Data) + 49
	}
	sn := &listSnap{dir: dir, rev: pg.Revision, keys: make([]string, len(pg.Values)),
		enc: make([]byte, 0, n), offs: make([]int, 1, len(pg.Values)+1), made: c.now()}
	for i, v := range pg.Values {
		sn.keys[i] = v.Key
		sn.enc = appendItem(append(sn.enc, ','), v.Revision, v.Data)
		sn.offs = append(sn.offs, len(sn.enc))
	}
	sn.cost = took + time.Since(start)
	return sn, false, nil
}

// install makes sn dir's current snapshot; mu is held.
func (c *listCache) install(d *dirSnaps, sn *listSnap, large bool) {
	if large {
		d.large = c.now()
		return
	}
	if old := d.cur; old != nil && !old.paged.Load() {
		c.drop(old) // no page names it: no one needs it again
	}
	d.cur, d.large = sn, time.Time{}
	d.byRev[sn.rev] = sn
	c.held = append(c.held, sn)
	c.live++
	c.bytes += sn.size()
	c.expire(sn.made)
	if len(c.held) > 2*c.live+16 {
		// Replaced snapshots no page named are dropped at once, but held
		// would keep their memory until their time is up.
		c.held = slices.DeleteFunc(c.held, func(sn *listSnap) bool { return sn.dropped })
	}
}

// expire drops snapshots past snapTTL, and the oldest while all of them
// take more than snapBytes; mu is held.
func (c *listCache) expire(now time.Time) {
	i := 0
	for ; i < len(c.held); i++ {
		sn := c.held[i]
		if !sn.dropped && now.Sub(sn.made) < snapTTL && c.bytes <= snapBytes {
			break
		}
		c.drop(sn)
	}
	if i > 0 {
		c.held = slices.Delete(c.held, 0, i)
	}
}

// drop forgets sn; mu is held.
func (c *listCache) drop(sn *listSnap) {
	if sn.dropped {
		return
	}
	sn.dropped = true
	c.live--
	c.bytes -= sn.size()
	d := c.dirs[sn.dir]
	if d == nil {
		return
	}
	delete(d.byRev, sn.rev)
	if d.cur == sn {
		d.cur = nil
	}
	if d.cur == nil && len(d.byRev) == 0 && d.building == nil && d.large.IsZero() {
		delete(c.dirs, sn.dir)
	}
}

// at returns the snapshot of dir at rev if it is still held.
func (c *listCache) at(dir string, rev int64) *listSnap {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(c.now())
	if d := c.dirs[dir]; d != nil {
		return d.byRev[rev]
	}
	return nil
}

// dropAll forgets every snapshot (tests: a continue token outliving its
// snapshot).
func (c *listCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sn := range c.held {
		c.drop(sn)
	}
	c.held = nil
}

// snapshotPage is the page of dir that pg asks for, from a snapshot; ok
// is false when no snapshot serves it (no change tracking, a directory
// too large, or a continue token whose snapshot is gone): the caller then
// reads the page from the store.
func (s *Server) snapshotPage(ctx context.Context, dir string, pg page) (body pageBody, ok bool, err error) {
	c := s.snaps
	if c == nil {
		return body, false, nil
	}
	var sn *listSnap
	if pg.rev != 0 {
		sn = c.at(dir, pg.rev)
	} else if sn, err = c.current(ctx, dir); err != nil {
		return body, false, err
	}
	if sn == nil {
		return body, false, nil
	}
	after := ""
	if pg.after != "" {
		after = strings.TrimSuffix(dir, "/") + "/" + pg.after
	}
	return sn.page(after, pg.limit), true, nil
}

// readSnapshot reads dir for a snapshot, in the list gate like any list.
func (s *Server) readSnapshot(ctx context.Context, dir string, limit int) (store.Page, time.Duration, error) {
	release, err := s.lists.enter(ctx)
	if err != nil {
		return store.Page{}, 0, err
	}
	defer release()
	start := time.Now()
	pg, err := s.store.ListPage(ctx, dir, "", limit, 0)
	return pg, time.Since(start), err
}

// listError is what a failed snapshot read answers.
func (s *Server) listError(dir string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("list %s: %w", dir, err)
}
