package audit_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/store"
)

// getEntry reads entry seq straight from the store.
func getEntry(t *testing.T, s store.Store, seq uint64) audit.Entry {
	t.Helper()
	v, err := s.Get(t.Context(), audit.Key(seq))
	if err != nil {
		t.Fatal(err)
	}
	var e audit.Entry
	if err := json.Unmarshal(v.Data, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// putRaw writes data at key behind the log's back.
func putRaw(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(t.Context(), key, data, store.Any); err != nil {
		t.Fatal(err)
	}
}

func putEntry(t *testing.T, s store.Store, seq uint64, e audit.Entry) {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, s, audit.Key(seq), data)
}

// editEntry changes entry seq in place, keeping its stored hash.
func editEntry(t *testing.T, s store.Store, seq uint64, fn func(*audit.Entry)) {
	t.Helper()
	e := getEntry(t, s, seq)
	fn(&e)
	putEntry(t, s, seq, e)
}

func setHead(t *testing.T, s store.Store, h audit.Head) {
	t.Helper()
	data, _ := json.Marshal(h)
	putRaw(t, s, audit.HeadKey, data)
}

func del(t *testing.T, s store.Store, key string) {
	t.Helper()
	if _, err := s.Delete(t.Context(), key, store.Any); err != nil {
		t.Fatal(err)
	}
}

// rewriteFrom re-chains entries from seq on (renumbered and rehashed as a
// forger with write access would), and points the head at the last.
func rewriteFrom(t *testing.T, s store.Store, seq uint64, entries []audit.Entry) {
	t.Helper()
	prev := getEntry(t, s, seq-1).Hash
	for i, e := range entries {
		e.Seq, e.PrevHash = seq+uint64(i), prev
		e.Hash = e.ComputeHash()
		putEntry(t, s, e.Seq, e)
		prev = e.Hash
	}
	setHead(t, s, audit.Head{Seq: seq + uint64(len(entries)) - 1, Hash: prev})
}

// TestVerifyDetectsTampering: each kind of tampering with a 10-entry log
// is reported at the first entry it breaks.
func TestVerifyDetectsTampering(t *testing.T) {
	const n = 10
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, s store.Store)
		anchor bool // verify against the head saved before tampering
		seq    uint64
		reason string
	}{
		{name: "edit actor", seq: 4, reason: "edited", tamper: func(t *testing.T, s store.Store) {
			editEntry(t, s, 4, func(e *audit.Entry) { e.Actor = "mallory" })
		}},
		{name: "edit decision", seq: 7, reason: "edited", tamper: func(t *testing.T, s store.Store) {
			editEntry(t, s, 7, func(e *audit.Entry) { e.Decision = audit.Deny })
		}},
		{name: "edit details", seq: 2, reason: "edited", tamper: func(t *testing.T, s store.Store) {
			editEntry(t, s, 2, func(e *audit.Entry) { e.Details = json.RawMessage(`{"replicas":200}`) })
		}},
		{name: "edit time", seq: 9, reason: "edited", tamper: func(t *testing.T, s store.Store) {
			editEntry(t, s, 9, func(e *audit.Entry) { e.Time = e.Time.Add(-time.Hour) })
		}},
		{name: "edit and rehash", seq: 5, reason: "prevHash", tamper: func(t *testing.T, s store.Store) {
			editEntry(t, s, 4, func(e *audit.Entry) { e.Tenant = "other"; e.Hash = e.ComputeHash() })
		}},
		{name: "edit bytes", seq: 6, reason: "unreadable", tamper: func(t *testing.T, s store.Store) {
			putRaw(t, s, audit.Key(6), []byte(`{"seq":6,`))
		}},
		{name: "add a field", seq: 6, reason: "unreadable", tamper: func(t *testing.T, s store.Store) {
			v, _ := s.Get(t.Context(), audit.Key(6))
			putRaw(t, s, audit.Key(6), []byte(strings.Replace(string(v.Data), `{`, `{"note":"x",`, 1)))
		}},
		{name: "remove first", seq: 1, reason: "missing", tamper: func(t *testing.T, s store.Store) {
			del(t, s, audit.Key(1))
		}},
		{name: "remove middle", seq: 4, reason: "missing", tamper: func(t *testing.T, s store.Store) {
			del(t, s, audit.Key(4))
		}},
		{name: "remove last", seq: n, reason: "head says", tamper: func(t *testing.T, s store.Store) {
			del(t, s, audit.Key(n))
		}},
		{name: "remove last and rewrite head", anchor: true, seq: n, reason: "anchor", tamper: func(t *testing.T, s store.Store) {
			del(t, s, audit.Key(n))
			setHead(t, s, audit.Head{Seq: n - 1, Hash: getEntry(t, s, n-1).Hash})
		}},
		{name: "remove head", seq: n, reason: "head is missing", tamper: func(t *testing.T, s store.Store) {
			del(t, s, audit.HeadKey)
		}},
		{name: "edit head", seq: n, reason: "head's hash", tamper: func(t *testing.T, s store.Store) {
			setHead(t, s, audit.Head{Seq: n, Hash: getEntry(t, s, 3).Hash})
		}},
		{name: "swap two", seq: 3, reason: "reordered", tamper: func(t *testing.T, s store.Store) {
			e3, e4 := getEntry(t, s, 3), getEntry(t, s, 4)
			putEntry(t, s, 3, e4)
			putEntry(t, s, 4, e3)
		}},
		{name: "swap two and renumber", seq: 3, reason: "prevHash", tamper: func(t *testing.T, s store.Store) {
			e3, e4 := getEntry(t, s, 3), getEntry(t, s, 4)
			e3.Seq, e4.Seq = 4, 3
			e3.Hash, e4.Hash = e3.ComputeHash(), e4.ComputeHash()
			putEntry(t, s, 3, e4)
			putEntry(t, s, 4, e3)
		}},
		{name: "swap and rewrite the rest", anchor: true, seq: n, reason: "anchor", tamper: func(t *testing.T, s store.Store) {
			var rest []audit.Entry
			for seq := uint64(3); seq <= n; seq++ {
				rest = append(rest, getEntry(t, s, seq))
			}
			rest[0], rest[1] = rest[1], rest[0]
			rewriteFrom(t, s, 3, rest)
		}},
		{name: "insert", seq: 6, reason: "reordered", tamper: func(t *testing.T, s store.Store) {
			for seq := uint64(n); seq >= 5; seq-- {
				putEntry(t, s, seq+1, getEntry(t, s, seq))
			}
			forged := getEntry(t, s, 4)
			forged.Seq, forged.PrevHash, forged.Actor = 5, forged.Hash, "mallory"
			forged.Hash = forged.ComputeHash()
			putEntry(t, s, 5, forged)
			setHead(t, s, audit.Head{Seq: n + 1, Hash: getEntry(t, s, n+1).Hash})
		}},
		{name: "insert and rewrite the rest", anchor: true, seq: n, reason: "anchor", tamper: func(t *testing.T, s store.Store) {
			rest := []audit.Entry{getEntry(t, s, 4)}
			rest[0].Actor = "mallory"
			for seq := uint64(5); seq <= n; seq++ {
				rest = append(rest, getEntry(t, s, seq))
			}
			rewriteFrom(t, s, 5, rest)
		}},
		{name: "append outside the log", seq: n + 1, reason: "past the head", tamper: func(t *testing.T, s store.Store) {
			e := getEntry(t, s, n)
			e.Seq, e.PrevHash = n+1, e.Hash
			e.Hash = e.ComputeHash()
			putEntry(t, s, n+1, e)
		}},
		{name: "entry zero", seq: 0, reason: "inserted", tamper: func(t *testing.T, s store.Store) {
			putEntry(t, s, 0, getEntry(t, s, 1))
		}},
		{name: "stray key", seq: n + 1, reason: "unexpected key", tamper: func(t *testing.T, s store.Store) {
			putRaw(t, s, audit.LogDir+"/x", []byte("{}"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			l := fill(t, s, n)
			before, err := l.Verify(t.Context())
			if err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			tc.tamper(t, s)
			var anchors []audit.Head
			if tc.anchor {
				anchors = append(anchors, before.Head)
				// A forger who rewrites everything from some entry on,
				// head included, leaves a consistent chain: only an
				// anchor kept elsewhere shows it (see the package doc).
				if _, err := l.Verify(t.Context()); err != nil {
					t.Fatalf("a full rewrite is expected to verify without an anchor; got %v", err)
				}
			}
			_, err = l.Verify(t.Context(), anchors...)
			b, ok := errors.AsType[*audit.Break](err)
			if !ok || !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("Verify after tampering: %v, want a *Break", err)
			}
			if b.Seq != tc.seq || !strings.Contains(b.Reason, tc.reason) {
				t.Fatalf("break at %d (%s), want at %d mentioning %q", b.Seq, b.Reason, tc.seq, tc.reason)
			}
		})
	}
}
