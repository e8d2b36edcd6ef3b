package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Break is the first place Verify found the chain broken. It wraps
// ErrBroken.
type Break struct {
	// Seq is the first entry that is missing or does not verify.
	Seq uint64
	// Key is the store key involved, when there is one.
	Key string
	// Reason says what is wrong, in words for an operator.
	Reason string
}

func (b *Break) Error() string { return fmt.Sprintf("audit entry %d: %s", b.Seq, b.Reason) }

// Is makes errors.Is(err, ErrBroken) true for every *Break.
func (b *Break) Is(target error) bool { return target == ErrBroken }

// Summary describes a log that verified.
type Summary struct {
	Entries uint64
	Head    Head
}

// Verify reads the whole log at one store revision and checks every link:
// entries numbered 1..n with no gap, each entry's stored seq matching its
// key, each prevHash equal to the previous entry's hash, each hash equal
// to the hash of its content, and the head naming the last entry. Each
// anchor (a Head saved from an earlier Verify) must still be in the
// chain. It returns a *Break for the first entry that fails, and other
// errors (such as store.ErrCorrupt) when the log cannot be read at all.
func (l *Log) Verify(ctx context.Context, anchors ...Head) (Summary, error) {
	vals, _, err := l.s.List(ctx, Dir)
	if err != nil {
		return Summary{}, fmt.Errorf("audit verify: %w", err)
	}
	want := map[uint64]string{}
	for _, a := range anchors {
		want[a.Seq] = a.Hash
	}
	var (
		head     *Head
		headKey  string
		prev     = GenesisHash
		expected = uint64(1)
	)
	for _, v := range vals {
		if v.Key == HeadKey {
			var h Head
			if err := strictJSON(v.Data, &h); err != nil || !isHash(h.Hash) {
				return Summary{}, &Break{Seq: 0, Key: v.Key, Reason: "head is unreadable"}
			}
			head, headKey = &h, v.Key
			continue
		}
		digits, ok := strings.CutPrefix(v.Key, LogDir+"/")
		seq, err := strconv.ParseUint(digits, 10, 64)
		if !ok || err != nil || len(digits) != 20 {
			return Summary{}, &Break{Seq: expected, Key: v.Key, Reason: fmt.Sprintf("unexpected key %q in the audit log (inserted)", v.Key)}
		}
		switch {
		case seq > expected:
			return Summary{}, &Break{Seq: expected, Key: Key(expected), Reason: fmt.Sprintf("entry is missing (removed); the next is %d", seq)}
		case seq < expected:
			return Summary{}, &Break{Seq: seq, Key: v.Key, Reason: "entry 0 does not exist in a chain (inserted)"}
		}
		e, err := decode(v.Data)
		if err != nil {
			return Summary{}, &Break{Seq: seq, Key: v.Key, Reason: fmt.Sprintf("entry is unreadable (edited): %v", err)}
		}
		switch {
		case e.Seq != seq:
			return Summary{}, &Break{Seq: seq, Key: v.Key, Reason: fmt.Sprintf("entry says it is %d (moved or reordered)", e.Seq)}
		case e.PrevHash != prev:
			return Summary{}, &Break{Seq: seq, Key: v.Key, Reason: fmt.Sprintf("prevHash does not match the hash of entry %d (an entry before it was edited, removed, reordered or inserted)", seq-1)}
		case e.ComputeHash() != e.Hash:
			return Summary{}, &Break{Seq: seq, Key: v.Key, Reason: "hash does not match the entry's content (edited)"}
		}
		if h, ok := want[seq]; ok && h != e.Hash {
			return Summary{}, &Break{Seq: seq, Key: v.Key, Reason: fmt.Sprintf("hash differs from the anchor %d:%s (the chain was rewritten)", seq, h)}
		}
		prev = e.Hash
		expected++
	}
	last := expected - 1
	switch {
	case head == nil && last > 0:
		return Summary{}, &Break{Seq: last, Key: HeadKey, Reason: "the head is missing (removed)"}
	case head != nil && head.Seq > last:
		return Summary{}, &Break{Seq: last + 1, Key: Key(last + 1), Reason: fmt.Sprintf("entry is missing: the head says the log ends at %d (entries at the end removed)", head.Seq)}
	case head != nil && head.Seq < last:
		return Summary{}, &Break{Seq: head.Seq + 1, Key: Key(head.Seq + 1), Reason: fmt.Sprintf("entry is past the head, which says the log ends at %d (appended outside the log)", head.Seq)}
	case head != nil && head.Hash != prev:
		return Summary{}, &Break{Seq: last, Key: headKey, Reason: "the head's hash does not match the last entry (edited)"}
	}
	for _, a := range anchors {
		if a.Seq > last {
			return Summary{}, &Break{Seq: last + 1, Key: Key(last + 1), Reason: fmt.Sprintf("entry is missing: anchor %d:%s is past the end of the log (entries at the end removed)", a.Seq, a.Hash)}
		}
	}
	return Summary{Entries: last, Head: Head{Seq: last, Hash: prev}}, nil
}

// strictJSON decodes data into v, refusing unknown fields.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
