package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"rung.dev/rung/internal/store"
)

// Every value this package writes to bbolt is a record:
//
//	version(1) kind(1) revision(8, big endian) crc32c(4, big endian) payload
//
// The CRC-32C covers the bbolt key the record is stored under, the first
// ten header bytes and the payload, so a flipped bit anywhere in a value,
// or a value that ended up under another key, is detected on read.
const (
	recordVersion = 1
	headerSize    = 14
)

// Record kinds.
const (
	kindValue   byte = 1 // a live key's value; payload = data
	kindPut     byte = 2 // a history event; payload = key length(2) key data
	kindDelete  byte = 3 // a history event; payload = key length(2) key
	kindCounter byte = 4 // a counter in the meta bucket; payload empty
)

// castagnoli is the CRC-32C table (hardware-accelerated on amd64, arm64).
func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// record seals and unseals records; it holds the CRC table.
type record struct{ table *crc32.Table }

func (r record) sum(bkey, head, payload []byte) uint32 {
	c := crc32.Update(0, r.table, bkey)
	c = crc32.Update(c, r.table, head)
	return crc32.Update(c, r.table, payload)
}

// seal encodes a record stored under bkey.
func (r record) seal(bkey []byte, kind byte, rev int64, payload []byte) []byte {
	b := make([]byte, headerSize+len(payload))
	b[0] = recordVersion
	b[1] = kind
	binary.BigEndian.PutUint64(b[2:10], uint64(rev))
	copy(b[headerSize:], payload)
	binary.BigEndian.PutUint32(b[10:14], r.sum(bkey, b[:10], payload))
	return b
}

// unseal checks and decodes the record raw stored under bkey. The payload
// aliases raw. Any mismatch wraps store.ErrCorrupt.
func (r record) unseal(bkey, raw []byte, want ...byte) (kind byte, rev int64, payload []byte, err error) {
	if len(raw) < headerSize {
		return 0, 0, nil, fmt.Errorf("%s: %d bytes, shorter than its header: %w", recordName(bkey), len(raw), store.ErrCorrupt)
	}
	if raw[0] != recordVersion {
		return 0, 0, nil, fmt.Errorf("%s: unknown version %d: %w", recordName(bkey), raw[0], store.ErrCorrupt)
	}
	payload = raw[headerSize:]
	if got, sum := binary.BigEndian.Uint32(raw[10:14]), r.sum(bkey, raw[:10], payload); got != sum {
		return 0, 0, nil, fmt.Errorf("%s: checksum %08x, computed %08x: %w", recordName(bkey), got, sum, store.ErrCorrupt)
	}
	kind = raw[1]
	ok := len(want) == 0
	for _, w := range want {
		ok = ok || kind == w
	}
	if !ok {
		return 0, 0, nil, fmt.Errorf("%s: unexpected kind %d: %w", recordName(bkey), kind, store.ErrCorrupt)
	}
	rev = int64(binary.BigEndian.Uint64(raw[2:10]))
	if rev <= 0 && kind != kindCounter && kind != kindDigest {
		return 0, 0, nil, fmt.Errorf("%s: revision %d: %w", recordName(bkey), rev, store.ErrCorrupt)
	}
	return kind, rev, payload, nil
}

// recordName names the record stored under bkey in errors (only then:
// formatting it on every read cost more than the checksum).
func recordName(bkey []byte) string {
	if len(bkey) == 10 && bkey[0] != '/' {
		return fmt.Sprintf("history record %d.%d", binary.BigEndian.Uint64(bkey), binary.BigEndian.Uint16(bkey[8:]))
	}
	return fmt.Sprintf("record %q", bkey)
}

// eventKey is the history key of the i-th change of revision rev.
func eventKey(rev int64, i int) []byte {
	b := make([]byte, 10)
	binary.BigEndian.PutUint64(b, uint64(rev))
	binary.BigEndian.PutUint16(b[8:], uint16(i))
	return b
}

// eventPayload encodes a history event's key and data.
func eventPayload(key string, data []byte) []byte {
	b := make([]byte, 2+len(key)+len(data))
	binary.BigEndian.PutUint16(b, uint16(len(key)))
	copy(b[2:], key)
	copy(b[2+len(key):], data)
	return b
}

// decodeEvent decodes a history record into a store.Event (copying out of
// bbolt's memory).
func (r record) decodeEvent(bkey, raw []byte) (store.Event, error) {
	ev, _, err := r.decodeEventUnder(bkey, raw, "")
	return ev, err
}

// decodeEventUnder is decodeEvent for a reader that wants only the keys
// below prefix: the record is checked all the same, but one of another key
// is not copied (ok false). Watches and list pages scan all of history
// for their own directory's few events.
func (r record) decodeEventUnder(bkey, raw []byte, prefix string) (ev store.Event, ok bool, err error) {
	if len(bkey) != 10 {
		return store.Event{}, false, fmt.Errorf("history key %x: %w", bkey, store.ErrCorrupt)
	}
	kind, rev, p, err := r.unseal(bkey, raw, kindPut, kindDelete)
	if err != nil {
		return store.Event{}, false, err
	}
	if want := int64(binary.BigEndian.Uint64(bkey)); rev != want {
		return store.Event{}, false, fmt.Errorf("history %x: revision %d: %w", bkey, rev, store.ErrCorrupt)
	}
	if len(p) < 2 || len(p) < 2+int(binary.BigEndian.Uint16(p)) {
		return store.Event{}, false, fmt.Errorf("history %x: short payload: %w", bkey, store.ErrCorrupt)
	}
	n := int(binary.BigEndian.Uint16(p))
	if !bytes.HasPrefix(p[2:2+n], []byte(prefix)) {
		return store.Event{}, false, nil
	}
	ev = store.Event{Type: store.EventPut, Value: store.Value{Key: string(p[2 : 2+n]), Revision: rev}}
	if kind == kindDelete {
		ev.Type = store.EventDelete
	} else {
		ev.Value.Data = append([]byte{}, p[2+n:]...)
	}
	return ev, true, nil
}
