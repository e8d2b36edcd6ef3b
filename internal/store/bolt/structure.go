package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"

	"rung.dev/rung/internal/store"
)

// bbolt trusts the pages of its file: a damaged element size or page id
// makes it read outside its memory map, and its consistency check
// (tx.Check) runs on a goroutine of its own, where such a fault kills the
// process. So before bbolt maps a file, walkPages reads every page
// reachable from the newest meta page with ordinary, bounds-checked reads
// and checks what bbolt would dereference: page ids and overflow within
// the file, element offsets and sizes within their page, keys in order,
// nested buckets, and no page reachable twice (no cycles).
//
// The layout is bbolt's file format version 2, which has not changed
// since bbolt forked from Bolt.
const (
	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageFreelist = 0x10
	elementSize  = 16 // branch: pos ksize pgid; leaf: flags pos ksize vsize
	leafBucket   = 0x01
	inBucketSize = 16 // root pgid, sequence
	noFreelist   = ^uint64(0)
	maxDepth     = 64
)

// pageWalker reads pages of one file.
type pageWalker struct {
	f        *os.File
	pageSize int
	hwm      uint64 // pages below this id exist
	seen     map[uint64]bool
	problems []string
}

// walkPages checks the page structure of the file at path as seen from
// meta m, returning nil or an error wrapping store.ErrCorrupt.
func walkPages(path string, m boltMeta) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &pageWalker{f: f, pageSize: int(m.pageSize), hwm: m.pgid, seen: map[uint64]bool{}}
	if m.freelist != noFreelist {
		if p, err := w.page(m.freelist); err != nil {
			w.fail("freelist: %v", err)
		} else if p.flags != pageFreelist {
			w.fail("freelist page %d: flags %#x", m.freelist, p.flags)
		}
	}
	w.walk(m.root, 0)
	if len(w.problems) == 0 {
		return nil
	}
	more := ""
	if len(w.problems) > maxProblems {
		more = fmt.Sprintf("; and %d more", len(w.problems)-maxProblems)
		w.problems = w.problems[:maxProblems]
	}
	return fmt.Errorf("page structure: %w: %s%s", store.ErrCorrupt, strings.Join(w.problems, "; "), more)
}

func (w *pageWalker) fail(format string, args ...any) {
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
}

// rawPage is one page (with its overflow) as read from the file.
type rawPage struct {
	id    uint64
	flags uint16
	count uint16
	data  []byte // the whole page, header included
}

// page reads page id and its overflow pages, checking both are in range.
func (w *pageWalker) page(id uint64) (rawPage, error) {
	if id < 2 || id >= w.hwm {
		return rawPage{}, fmt.Errorf("page %d outside the file's %d pages", id, w.hwm)
	}
	head := make([]byte, pageHeaderSize)
	if _, err := w.f.ReadAt(head, int64(id)*int64(w.pageSize)); err != nil {
		return rawPage{}, fmt.Errorf("page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	overflow := uint64(ne.Uint32(head[12:]))
	if id+overflow >= w.hwm {
		return rawPage{}, fmt.Errorf("page %d: %d overflow pages run past the file's %d", id, overflow, w.hwm)
	}
	data := make([]byte, (1+int(overflow))*w.pageSize)
	if _, err := w.f.ReadAt(data, int64(id)*int64(w.pageSize)); err != nil {
		return rawPage{}, fmt.Errorf("page %d: %w", id, err)
	}
	p := rawPage{id: ne.Uint64(data), flags: ne.Uint16(data[8:]), count: ne.Uint16(data[10:]), data: data}
	if p.id != id {
		return rawPage{}, fmt.Errorf("page %d: header says page %d", id, p.id)
	}
	return p, nil
}

// walk checks the bucket tree rooted at page id.
func (w *pageWalker) walk(id uint64, depth int) {
	if depth > maxDepth {
		w.fail("page %d: tree deeper than %d", id, maxDepth)
		return
	}
	if w.seen[id] {
		w.fail("page %d: reachable twice", id)
		return
	}
	w.seen[id] = true
	p, err := w.page(id)
	if err != nil {
		w.fail("%v", err)
		return
	}
	for i := range uint64(len(p.data)/w.pageSize - 1) {
		w.seen[id+1+i] = true
	}
	w.elements(fmt.Sprintf("page %d", id), p.flags, p.count, p.data, depth)
}

// elements checks the elements of a branch or leaf page (or an inline
// bucket's page) held in data, and walks what they point to.
func (w *pageWalker) elements(where string, flags, count uint16, data []byte, depth int) {
	ne := binary.NativeEndian
	if flags != pageBranch && flags != pageLeaf {
		w.fail("%s: flags %#x, want branch or leaf", where, flags)
		return
	}
	if pageHeaderSize+int(count)*elementSize > len(data) {
		w.fail("%s: %d elements overflow the page", where, count)
		return
	}
	var prev []byte
	for i := range int(count) {
		at := pageHeaderSize + i*elementSize
		e := data[at : at+elementSize]
		var pos, ksize, vsize uint64
		if flags == pageBranch {
			pos, ksize = uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
		} else {
			pos, ksize, vsize = uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		}
		start := uint64(at) + pos
		if start+ksize+vsize > uint64(len(data)) {
			w.fail("%s: element %d runs past the page", where, i)
			return
		}
		key := data[start : start+ksize]
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			w.fail("%s: element %d: keys out of order", where, i)
			return
		}
		prev = key
		if flags == pageBranch {
			w.walk(ne.Uint64(e[8:]), depth+1)
			continue
		}
		if ne.Uint32(e[0:])&leafBucket == 0 {
			continue
		}
		val := data[start+ksize : start+ksize+vsize]
		if len(val) < inBucketSize {
			w.fail("%s: bucket %q: value of %d bytes", where, key, len(val))
			continue
		}
		if root := ne.Uint64(val); root != 0 {
			w.walk(root, depth+1)
			continue
		}
		inline := val[inBucketSize:]
		if len(inline) < pageHeaderSize {
			w.fail("%s: inline bucket %q: %d bytes", where, key, len(inline))
			continue
		}
		w.elements(fmt.Sprintf("inline bucket %q", key), ne.Uint16(inline[8:]), ne.Uint16(inline[10:]), inline, depth+1)
	}
}
