// Package store is rung's state: a small, revisioned key-value interface
// that the control plane, the audit log and the agents share, with two
// backends behind it (an embedded bbolt file and a real etcd cluster).
//
// Keys are hierarchical, slash-separated paths such as
// /tenants/acme/workloads/api (see ValidateKey). Every change gets the
// next value of one store-wide revision counter; a key's Value.Revision is
// the revision of its last change, and it is what compare-and-swap writes
// and Watch resume points are expressed in.
//
// The conformance suite in package storetest defines the behaviour every
// backend must have; where this documentation and the suite disagree, the
// suite is right and this file is a bug.
package store

import (
	"context"
	"errors"
	"io"
)

// Sentinel errors. Backends wrap them with what was being done and with
// which key; callers check them with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a create-only write found the key already present.
	ErrExists = errors.New("already exists")
	// ErrConflict: a compare-and-swap precondition did not hold (the key
	// changed or was deleted since the expected revision).
	ErrConflict = errors.New("revision conflict")
	// ErrCorrupt: stored data failed an integrity check. The data is not
	// returned and not discarded; an operator must look at it.
	ErrCorrupt = errors.New("data corrupt")
	// ErrInvalidKey: a key or prefix breaks the rules of ValidateKey.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalid: an argument other than a key is invalid (an unknown
	// precondition, an empty or duplicate-key transaction).
	ErrInvalid = errors.New("invalid argument")
	// ErrTooLarge: a value or a transaction exceeds the size limits.
	ErrTooLarge = errors.New("too large")
	// ErrCompacted: a watch asked for history older than the store keeps;
	// list again and watch from the list's revision.
	ErrCompacted = errors.New("revision compacted")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable: the store did not answer in time or cannot be
	// reached; the call may succeed later.
	ErrUnavailable = errors.New("store unavailable")
)

// Preconditions on a key's current revision, for Put, Delete and the
// operations of a Txn. Any positive number is a compare-and-swap: the key
// must exist with exactly that revision, or the write fails with
// ErrConflict.
const (
	// Any writes whatever the key's state: Put creates or overwrites;
	// Delete removes the key if it exists (ErrNotFound if it does not).
	Any int64 = 0
	// Create makes a Put create-only: ErrExists if the key exists.
	// It is not valid for Delete.
	Create int64 = -1
)

// Value is a stored key with its data and the revision of its last change.
type Value struct {
	Key      string
	Data     []byte
	Revision int64
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change seen by a Watch. For EventPut, Value holds the new
// data; for EventDelete, Value.Data is nil. Value.Revision is the revision
// of the change (all changes of one Txn share it).
//
// An event with a non-nil Err is the last one on its channel: the watch
// ended because of Err (ErrCompacted, ErrCorrupt, ErrClosed, a lost
// connection). A watch that ends because its context was cancelled just
// closes the channel.
type Event struct {
	Type  EventType
	Value Value
	Err   error
}

// OpKind is the kind of one Txn operation.
type OpKind int

// Operation kinds.
const (
	// OpPut writes Data at Key.
	OpPut OpKind = iota + 1
	// OpDelete removes Key.
	OpDelete
	// OpCheck only asserts Expect on Key (which must then be positive or
	// Create); it changes nothing. Use it to make a Txn depend on a key it
	// does not write, such as the tenant that owns an object.
	OpCheck
)

// Op is one operation of a Txn; build it with PutOp, DeleteOp or CheckOp.
type Op struct {
	Kind   OpKind
	Key    string
	Data   []byte
	Expect int64
}

// PutOp writes data at key if expect holds (Any, Create or a revision).
func PutOp(key string, data []byte, expect int64) Op {
	return Op{Kind: OpPut, Key: key, Data: data, Expect: expect}
}

// DeleteOp removes key if expect holds (Any or a revision).
func DeleteOp(key string, expect int64) Op {
	return Op{Kind: OpDelete, Key: key, Expect: expect}
}

// CheckOp asserts that key is at revision expect, or absent for Create.
func CheckOp(key string, expect int64) Op {
	return Op{Kind: OpCheck, Key: key, Expect: expect}
}

// Reader reads keys.
type Reader interface {
	// Get returns the key's current value, or ErrNotFound.
	Get(ctx context.Context, key string) (Value, error)
	// List returns every key strictly below dir (dir "/" lists
	// everything), sorted by key, and the store revision the list was
	// read at. Listing /tenants/acme never returns /tenants/acme2/...
	List(ctx context.Context, dir string) ([]Value, int64, error)
}

// Writer changes keys. Every successful write returns the store revision
// it created.
type Writer interface {
	// Put writes data at key if expect holds: Any, Create (ErrExists when
	// the key exists) or the key's current revision (ErrConflict
	// otherwise, also when the key is gone).
	Put(ctx context.Context, key string, data []byte, expect int64) (int64, error)
	// Delete removes key if expect holds: Any (ErrNotFound when the key
	// does not exist) or the key's current revision (ErrConflict
	// otherwise).
	Delete(ctx context.Context, key string, expect int64) (int64, error)
	// Txn applies ops atomically at one new revision: either every
	// precondition holds and every operation is applied, or nothing is and
	// the error names the first operation whose precondition failed
	// (wrapping ErrConflict, ErrExists or ErrNotFound). A key may appear
	// only once in a Txn.
	Txn(ctx context.Context, ops ...Op) (int64, error)
}

// Watcher follows changes.
type Watcher interface {
	// Watch sends, in revision order, every change to keys strictly below
	// dir with a revision >= from; from 0 means "changes after now". To
	// follow a List, watch from its revision + 1. The channel is closed
	// when ctx is cancelled, when the store is closed, or after an Event
	// with Err set. Watching history older than the backend keeps ends with
	// ErrCompacted.
	Watch(ctx context.Context, dir string, from int64) (<-chan Event, error)
}

// Page is one page of a paged list.
type Page struct {
	// Values are the page's keys, sorted.
	Values []Value
	// Revision is the store revision every page of the list is read at.
	Revision int64
	// More says keys follow the last of Values.
	More bool
}

// Pager reads a directory in pages that are one snapshot together.
type Pager interface {
	// ListPage returns up to limit keys strictly below dir and after the
	// key after ("" for the first page), sorted, as of revision rev (0 for
	// now; later pages pass the first page's Revision). A revision the
	// store can no longer show fails with ErrCompacted: etcd compacted
	// it, or (the embedded store keeps no old values) something below dir
	// changed since; the caller lists again from the first page.
	ListPage(ctx context.Context, dir, after string, limit int, rev int64) (Page, error)
}

// Store is the whole interface a backend implements. After Close every
// call fails with ErrClosed and open watches end; Close is idempotent.
type Store interface {
	Reader
	Pager
	Writer
	Watcher
	io.Closer
}

// ChangeTracker is implemented by a backend that sees every write to its
// data (the embedded store: one process holds the file). It lets a reader
// keep a copy of a directory and know, without a store read, whether the
// copy is still current.
type ChangeTracker interface {
	// LastChange returns a revision at or after the last write below dir
	// that has returned to its caller (0 when none since the store was
	// opened). It may be later than that write (the answer is an upper
	// bound), never earlier: a copy of dir read at revision r is current
	// while LastChange(dir) <= r.
	LastChange(dir string) int64
}
