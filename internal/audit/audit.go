// Package audit is rung's append-only, hash-chained audit log: every
// change, admission decision and denial becomes an Entry whose hash covers
// its content and the previous entry's hash, so that editing, removing,
// reordering or inserting an entry breaks the chain at a point Verify
// reports.
//
// # Storage
//
// The log lives in the same store.Store as the objects it describes:
// entry n at /audit/log/<n, 20 digits>, and the chain's head (last seq and
// hash) at /audit/head. Append writes the entry, the new head and the
// caller's own changes in one store.Txn, so a change and its audit entry
// commit together or not at all, with the store's durability (fsync on
// bbolt, consensus on etcd) and on every backend. A separate log file
// would need its own crash recovery and could disagree with the store
// after a crash; this cannot.
//
// # Hash
//
// Entry.Hash is the lowercase hex SHA-256 of the canonical encoding: the
// bytes "rung.audit.v1\x00" followed by, for each of seq (decimal), time
// (UTC, RFC 3339 with nanoseconds), actor, tenant, action, object,
// decision, details (compact JSON, or empty) and prevHash, the field's
// length as a uvarint and its bytes. The first entry's prevHash is
// GenesisHash. The encoding is unambiguous and needs no JSON
// canonicalization, so other tools can verify the log.
//
// # Limits
//
// A chain proves order and integrity, not completeness at its end: a
// writer with full access to the store can drop the last entries and
// rewrite the head. Verify reports the head ("seq:hash"); keep it
// elsewhere and pass it back as an anchor to detect that too.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"rung.dev/rung/internal/store"
)

// Store keys.
const (
	// Dir holds everything of the log; callers' Txn ops may not touch it.
	Dir = "/audit"
	// HeadKey holds the chain's head.
	HeadKey = Dir + "/head"
	// LogDir holds the entries, one key per seq.
	LogDir = Dir + "/log"
)

// GenesisHash is the prevHash of the first entry.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Decisions recorded by admission and authorization.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Size limits for a Record's fields.
const (
	MaxFieldSize   = 1 << 10
	MaxDetailsSize = 64 << 10
)

// maxAttempts bounds how often Append retries when another writer moved
// the head between its read and its commit.
const maxAttempts = 64

// ErrBroken is wrapped by every *Break that Verify returns.
var ErrBroken = errors.New("audit chain broken")

// Record is what a caller logs: who did what to which object, with what
// outcome.
type Record struct {
	Actor    string          // user or component, e.g. "token:ops-1" or "scheduler"
	Tenant   string          // tenant the action concerns; "" for cluster-wide
	Action   string          // e.g. "apply", "delete", "admit"; required
	Object   string          // e.g. "Workload/acme/api"
	Decision string          // Allow, Deny, or "" for a plain change
	Details  json.RawMessage // any JSON value; nil for none
}

// Entry is one link of the chain, as stored.
type Entry struct {
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Tenant   string          `json:"tenant,omitempty"`
	Action   string          `json:"action"`
	Object   string          `json:"object,omitempty"`
	Decision string          `json:"decision,omitempty"`
	Details  json.RawMessage `json:"details,omitempty"`
	PrevHash string          `json:"prevHash"`
	Hash     string          `json:"hash"`
}

// Head is the chain's last seq and hash, and the form of an anchor.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// String is "seq:hash", the form ParseHead reads.
func (h Head) String() string { return fmt.Sprintf("%d:%s", h.Seq, h.Hash) }

// ParseHead parses "seq:hash".
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || !isHash(hash) {
		return Head{}, fmt.Errorf("audit head %q: want SEQ:SHA256HEX: %w", s, store.ErrInvalid)
	}
	return Head{Seq: n, Hash: hash}, nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Log appends to and verifies the audit log in a store.
type Log struct {
	s   store.Store
	now func() time.Time
	// mu is held by the one append committing for this process (a group,
	// batch.go); other writers are handled by CAS.
	mu sync.Mutex
	// qmu guards queue, the appends waiting for the next group commit.
	qmu   sync.Mutex
	queue []*pending
}

// Option configures a Log.
type Option func(*Log)

// WithClock sets the clock entries are stamped with (default time.Now).
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// New returns the log kept in s.
func New(s store.Store, opts ...Option) *Log {
	l := &Log{s: s, now: time.Now}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Key is the store key of entry seq.
func Key(seq uint64) string { return fmt.Sprintf("%s/%020d", LogDir, seq) }

// Append adds r to the chain and applies ops (the change r records) in
// the same transaction: both commit or neither does. It returns the entry
// and the store revision. When a precondition of ops fails, nothing is
// written and the error wraps the store's sentinel; when another writer
// appended first, Append retries from the new head.
//
// Concurrent appends share one store transaction (group commit, batch.go):
// one fsync for many entries, each entry still chained and committed
// atomically with its own ops.
func (l *Log) Append(ctx context.Context, r Record, ops ...store.Op) (Entry, int64, error) {
	es, rev, err := l.AppendAll(ctx, []Record{r}, ops...)
	if err != nil {
		return Entry{}, 0, err
	}
	return es[0], rev, nil
}

// AppendAll is Append of several records at once: consecutive entries,
// committed with ops in one transaction (a batch of changes, each with
// its record).
func (l *Log) AppendAll(ctx context.Context, rs []Record, ops ...store.Op) ([]Entry, int64, error) {
	if len(rs) == 0 {
		return nil, 0, fmt.Errorf("audit append: no record: %w", store.ErrInvalid)
	}
	p := &pending{rs: rs, ops: ops, done: make(chan result, 1)}
	for _, r := range rs {
		details, err := r.validate()
		if err != nil {
			return nil, 0, err
		}
		p.details = append(p.details, details)
	}
	for i, op := range ops {
		if op.Key == Dir || strings.HasPrefix(op.Key, Dir+"/") {
			return nil, 0, fmt.Errorf("audit append: op %d writes %q inside the audit log: %w", i, op.Key, store.ErrInvalid)
		}
	}
	return l.group(ctx, p)
}

// appendOne commits p alone: the chain's next entry with p's ops.
func (l *Log) appendOne(ctx context.Context, p *pending) ([]Entry, int64, error) {
	for range maxAttempts {
		head, headRev, err := l.head(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("audit append: %w", err)
		}
		es, txn, err := l.link(head, p)
		if err != nil {
			return nil, 0, err
		}
		txn = append(p.ops[:len(p.ops):len(p.ops)], txn...)
		txn, err = l.withHead(txn, es[len(es)-1], headRev)
		if err != nil {
			return nil, 0, err
		}
		rev, err := l.s.Txn(ctx, txn...)
		if err == nil {
			return es, rev, nil
		}
		if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrExists) {
			return nil, 0, fmt.Errorf("audit append: %w", err)
		}
		// Retry only if the head moved; otherwise the caller's own
		// precondition failed.
		_, now, herr := l.head(ctx)
		if herr != nil {
			return nil, 0, fmt.Errorf("audit append: %w", herr)
		}
		if now == headRev {
			return nil, 0, fmt.Errorf("audit append: %w", err)
		}
	}
	return nil, 0, fmt.Errorf("audit append: head kept moving after %d attempts: %w", maxAttempts, store.ErrConflict)
}

// link makes p's entries after head and the ops that store them.
func (l *Log) link(head Head, p *pending) ([]Entry, []store.Op, error) {
	es := make([]Entry, len(p.rs))
	ops := make([]store.Op, len(p.rs))
	for i, r := range p.rs {
		e := Entry{
			Seq:      head.Seq + 1,
			Time:     l.now().UTC(),
			Actor:    r.Actor,
			Tenant:   r.Tenant,
			Action:   r.Action,
			Object:   r.Object,
			Decision: r.Decision,
			Details:  p.details[i],
			PrevHash: head.Hash,
		}
		e.Hash = e.ComputeHash()
		data, err := encode(e)
		if err != nil {
			return nil, nil, err
		}
		es[i], ops[i] = e, store.PutOp(Key(e.Seq), data, store.Create)
		head = Head{Seq: e.Seq, Hash: e.Hash}
	}
	return es, ops, nil
}

// withHead appends the op moving the head to last, expecting the head at
// headRev (absent when 0).
func (l *Log) withHead(txn []store.Op, last Entry, headRev int64) ([]store.Op, error) {
	headData, err := json.Marshal(Head{Seq: last.Seq, Hash: last.Hash})
	if err != nil {
		return nil, err
	}
	expect := headRev
	if expect == 0 {
		expect = store.Create
	}
	return append(txn, store.PutOp(HeadKey, headData, expect)), nil
}

// validate checks r's fields and returns its details in compact form.
func (r Record) validate() (json.RawMessage, error) {
	if r.Action == "" {
		return nil, fmt.Errorf("audit record: no action: %w", store.ErrInvalid)
	}
	for name, v := range map[string]string{"actor": r.Actor, "tenant": r.Tenant, "action": r.Action, "object": r.Object, "decision": r.Decision} {
		if len(v) > MaxFieldSize {
			return nil, fmt.Errorf("audit record: %s is %d bytes, at most %d: %w", name, len(v), MaxFieldSize, store.ErrTooLarge)
		}
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("audit record: %s is not UTF-8: %w", name, store.ErrInvalid)
		}
	}
	if len(r.Details) == 0 {
		return nil, nil
	}
	if len(r.Details) > MaxDetailsSize {
		return nil, fmt.Errorf("audit record: details are %d bytes, at most %d: %w", len(r.Details), MaxDetailsSize, store.ErrTooLarge)
	}
	// Compact checks the JSON as it goes (a separate json.Valid read it
	// twice).
	var b bytes.Buffer
	if !utf8.Valid(r.Details) || json.Compact(&b, r.Details) != nil {
		return nil, fmt.Errorf("audit record: details are not UTF-8 JSON: %w", store.ErrInvalid)
	}
	return json.RawMessage(b.Bytes()), nil
}

// encode is the stored JSON of e. HTML escaping is off so that details
// are stored exactly as they were hashed.
func encode(e Entry) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("audit entry %d: %w", e.Seq, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// decode reads a stored entry strictly.
func decode(data []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, err
	}
	if dec.More() {
		return Entry{}, errors.New("trailing data")
	}
	return e, nil
}

// ComputeHash is the hash of e's content and PrevHash (e.Hash itself is
// not part of it), as described in the package documentation.
func (e Entry) ComputeHash() string {
	h := sha256.New()
	h.Write([]byte("rung.audit.v1\x00"))
	var n [binary.MaxVarintLen64]byte
	for _, f := range []string{
		strconv.FormatUint(e.Seq, 10),
		e.Time.UTC().Format(time.RFC3339Nano),
		e.Actor, e.Tenant, e.Action, e.Object, e.Decision,
		string(e.Details),
		e.PrevHash,
	} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// head reads the chain's head and its store revision; an empty log has
// Head{0, GenesisHash} at revision 0.
func (l *Log) head(ctx context.Context) (Head, int64, error) {
	v, err := l.s.Get(ctx, HeadKey)
	if errors.Is(err, store.ErrNotFound) {
		return Head{Hash: GenesisHash}, 0, nil
	}
	if err != nil {
		return Head{}, 0, err
	}
	var h Head
	if err := json.Unmarshal(v.Data, &h); err != nil || !isHash(h.Hash) {
		return Head{}, 0, fmt.Errorf("audit head unreadable: %w", store.ErrCorrupt)
	}
	return h, v.Revision, nil
}

// Entries returns up to limit entries after seq after, in order.
func (l *Log) Entries(ctx context.Context, after uint64, limit int) ([]Entry, error) {
	var out []Entry
	for seq := after + 1; len(out) < limit; seq++ {
		v, err := l.s.Get(ctx, Key(seq))
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("audit entry %d: %w", seq, err)
		}
		e, err := decode(v.Data)
		if err != nil {
			return out, fmt.Errorf("audit entry %d: %w: %v", seq, store.ErrCorrupt, err)
		}
		out = append(out, e)
	}
	return out, nil
}
