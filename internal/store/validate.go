package store

import (
	"fmt"
	"strings"
)

// Limits every backend enforces, so that a write accepted by one is
// accepted by the other (an etcd cluster with default settings takes
// requests up to 1.5 MiB and 128 operations per transaction).
const (
	// MaxKeySize is the longest key, in bytes.
	MaxKeySize = 512
	// MaxKeyDepth is the most segments a key may have.
	MaxKeyDepth = 32
	// MaxValueSize is the largest value, in bytes.
	MaxValueSize = 1 << 20
	// MaxTxnOps is the most operations in one Txn.
	MaxTxnOps = 128
	// MaxTxnSize bounds the sum of keys and values in one Txn: a value of
	// MaxValueSize plus, for instance, its audit entry.
	MaxTxnSize = MaxValueSize + 128<<10
)

// ValidateKey reports whether key is a valid key, wrapping ErrInvalidKey
// if not. A key is "/" followed by one or more segments separated by "/";
// a segment is non-empty, not "." or "..", and made of ASCII letters,
// digits and "-._~:@=+". Keys are at most MaxKeySize bytes and
// MaxKeyDepth segments. Nothing else (no spaces, controls, NULs, "%",
// backslashes or non-ASCII) is accepted: keys end up in file names, URLs
// and logs.
func ValidateKey(key string) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("key %.80q: %w: %s", key, ErrInvalidKey, err)
	}
	return nil
}

func validateKey(key string) error {
	if len(key) > MaxKeySize {
		return fmt.Errorf("longer than %d bytes", MaxKeySize)
	}
	if !strings.HasPrefix(key, "/") {
		return fmt.Errorf(`must start with "/"`)
	}
	segs := strings.Split(key[1:], "/")
	if len(segs) > MaxKeyDepth {
		return fmt.Errorf("more than %d segments", MaxKeyDepth)
	}
	for _, s := range segs {
		switch s {
		case "":
			return fmt.Errorf("empty segment")
		case ".", "..":
			return fmt.Errorf("segment %q", s)
		}
		for i := 0; i < len(s); i++ {
			if !keyByte(s[i]) {
				return fmt.Errorf("byte %q not allowed", s[i])
			}
		}
	}
	return nil
}

func keyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~:@=+", c) >= 0
}

// DirPrefix validates dir for List and Watch and returns the prefix that
// every key strictly below it starts with: "/" for "/", and dir + "/"
// otherwise. A trailing "/" on dir is accepted and ignored.
func DirPrefix(dir string) (string, error) {
	if dir == "/" {
		return "/", nil
	}
	d := strings.TrimSuffix(dir, "/")
	if err := validateKey(d); err != nil {
		return "", fmt.Errorf("dir %.80q: %w: %s", dir, ErrInvalidKey, err)
	}
	return d + "/", nil
}

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpCheck:
		return "check"
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// ValidateOps checks a Txn's operations before anything is read or
// written: count and size limits, valid keys, known kinds, preconditions
// that make sense for the kind, and no key twice. Backends call it first.
func ValidateOps(ops []Op) error {
	if len(ops) == 0 {
		return fmt.Errorf("txn: no operations: %w", ErrInvalid)
	}
	if len(ops) > MaxTxnOps {
		return fmt.Errorf("txn: %d operations, at most %d: %w", len(ops), MaxTxnOps, ErrTooLarge)
	}
	seen := make(map[string]int, len(ops))
	total := 0
	for i, op := range ops {
		if err := ValidateOp(i, op); err != nil {
			return err
		}
		if j, dup := seen[op.Key]; dup {
			return fmt.Errorf("txn op %d: key %q already used by op %d: %w", i, op.Key, j, ErrInvalid)
		}
		seen[op.Key] = i
		total += len(op.Key) + len(op.Data)
	}
	if total > MaxTxnSize {
		return fmt.Errorf("txn: %d bytes of keys and values, at most %d: %w", total, MaxTxnSize, ErrTooLarge)
	}
	return nil
}

// Validate checks the operations of a write before a backend reads or
// writes anything: ops of a Txn with ValidateOps, or the single operation
// of a Put or Delete with ValidateOp (so that its errors read as that
// call's, not as "txn op 0").
func Validate(single bool, ops []Op) error {
	if single && len(ops) == 1 {
		return ValidateOp(-1, ops[0])
	}
	return ValidateOps(ops)
}

// WatchPrefix checks the arguments of Watch and returns the key prefix to
// watch (see DirPrefix).
func WatchPrefix(dir string, from int64) (string, error) {
	prefix, err := DirPrefix(dir)
	if err != nil {
		return "", fmt.Errorf("watch: %w", err)
	}
	if from < 0 {
		return "", fmt.Errorf("watch %q: revision %d: %w", dir, from, ErrInvalid)
	}
	return prefix, nil
}

// ValidateOp checks one operation: its key, kind, precondition and value
// size. i is its index in a Txn, or -1 for a single Put or Delete; it only
// shapes the error message.
func ValidateOp(i int, op Op) error {
	if err := validateKey(op.Key); err != nil {
		return opError(i, op, fmt.Errorf("%w: %s", ErrInvalidKey, err))
	}
	var ok bool
	switch op.Kind {
	case OpPut:
		ok = op.Expect >= Create
		if len(op.Data) > MaxValueSize {
			return opError(i, op, fmt.Errorf("value is %d bytes, at most %d: %w", len(op.Data), MaxValueSize, ErrTooLarge))
		}
	case OpDelete:
		ok = op.Expect >= Any
	case OpCheck:
		ok = op.Expect == Create || op.Expect > 0
	default:
		return opError(i, op, fmt.Errorf("unknown operation kind: %w", ErrInvalid))
	}
	if !ok {
		return opError(i, op, fmt.Errorf("precondition %d not valid for %s: %w", op.Expect, op.Kind, ErrInvalid))
	}
	return nil
}

// CheckPrecondition decides whether op may apply to a key whose current
// revision is rev (0 when the key does not exist). It returns nil or an
// error wrapping ErrExists, ErrConflict or ErrNotFound that names the
// operation; i is its index in the Txn, or -1 for a single Put or Delete.
func CheckPrecondition(i int, op Op, rev int64) error {
	switch {
	case op.Expect == Create && rev != 0:
		return opError(i, op, ErrExists)
	case op.Expect == Create:
		return nil
	case op.Expect == Any && op.Kind == OpDelete && rev == 0:
		return opError(i, op, ErrNotFound)
	case op.Expect == Any:
		return nil
	case op.Expect == rev:
		return nil
	case rev == 0:
		return opError(i, op, fmt.Errorf("expected revision %d, key is gone: %w", op.Expect, ErrConflict))
	default:
		return opError(i, op, fmt.Errorf("expected revision %d, have %d: %w", op.Expect, rev, ErrConflict))
	}
}

// opError prefixes err with the operation it is about.
func opError(i int, op Op, err error) error {
	if i < 0 {
		return fmt.Errorf("%s %.80q: %w", op.Kind, op.Key, err)
	}
	return fmt.Errorf("txn op %d (%s %.80q): %w", i, op.Kind, op.Key, err)
}
