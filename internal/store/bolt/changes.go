package bolt

import (
	"strings"
	"sync"

	"rung.dev/rung/internal/store"
)

var _ store.ChangeTracker = (*Store)(nil)

// maxTracked bounds the directories changes remembers; past it they are
// all forgotten at once and every directory counts as changed at the
// latest revision (a conservative answer, see LastChange).
const maxTracked = 1 << 14

// changes is the revision of the last write below each directory, kept in
// memory since Open: this process is the only writer of the file.
type changes struct {
	mu    sync.Mutex
	last  map[string]int64 // by directory prefix ("/workloads/acme/")
	floor int64            // the answer for directories not in last
	top   int64            // the latest revision recorded
}

// record notes a returned write of keys at rev: every directory above
// each key changed at rev.
func (c *changes) record(rev int64, ops []store.Op) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.top = max(c.top, rev)
	switch {
	case c.last == nil:
		c.last = map[string]int64{}
	case len(c.last) > maxTracked:
		c.last, c.floor = map[string]int64{}, c.top
	}
	for _, op := range ops {
		if op.Kind == store.OpCheck {
			continue
		}
		for i := strings.LastIndexByte(op.Key, '/'); i >= 0; i = strings.LastIndexByte(op.Key[:i], '/') {
			p := op.Key[:i+1]
			if c.last[p] >= rev {
				break // this write's other keys already marked the rest
			}
			c.last[p] = rev
		}
	}
}

// LastChange implements store.ChangeTracker.
func (s *Store) LastChange(dir string) int64 {
	prefix, err := store.DirPrefix(dir)
	if err != nil {
		return 1<<63 - 1 // not a directory: never current
	}
	c := &s.tracked
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.floor, c.last[prefix])
}
