package bolt

import (
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"rung.dev/rung/internal/store"
)

// A damaged page header can make bbolt silently lose records (a lower
// element count hides the last keys of a page), which no per-record
// checksum can see. So the meta bucket keeps a digest of each data
// bucket, updated in the same transaction as every change: how many
// records it holds and the XOR of their checksums. Check recomputes both.
const (
	metaDigest      = "digest"
	kindDigest byte = 5
)

// tally is a bucket's record count and the XOR of its records' CRCs.
type tally struct {
	count uint64
	xor   uint32
}

func (t *tally) add(raw []byte)    { t.count++; t.xor ^= recordCRC(raw) }
func (t *tally) remove(raw []byte) { t.count--; t.xor ^= recordCRC(raw) }

// recordCRC is the checksum stored in a record's header.
func recordCRC(raw []byte) uint32 {
	if len(raw) < headerSize {
		return 0
	}
	return binary.BigEndian.Uint32(raw[10:14])
}

// digest is the tallies of the kv and history buckets.
type digest struct{ kv, hist tally }

func (d digest) encode() []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint64(b[0:], d.kv.count)
	binary.BigEndian.PutUint32(b[8:], d.kv.xor)
	binary.BigEndian.PutUint64(b[12:], d.hist.count)
	binary.BigEndian.PutUint32(b[20:], d.hist.xor)
	return b
}

// readDigest reads the stored digest.
func (s *Store) readDigest(tx *bbolt.Tx) (digest, error) {
	raw := tx.Bucket([]byte(bucketMeta)).Get([]byte(metaDigest))
	if raw == nil {
		return digest{}, fmt.Errorf("meta: no digest: %w", store.ErrCorrupt)
	}
	_, _, p, err := s.rec.unseal([]byte(metaDigest), raw, kindDigest)
	if err != nil {
		return digest{}, err
	}
	if len(p) != 24 {
		return digest{}, fmt.Errorf("meta: digest of %d bytes: %w", len(p), store.ErrCorrupt)
	}
	return digest{
		kv:   tally{binary.BigEndian.Uint64(p[0:]), binary.BigEndian.Uint32(p[8:])},
		hist: tally{binary.BigEndian.Uint64(p[12:]), binary.BigEndian.Uint32(p[20:])},
	}, nil
}

// writeDigest stores d, sealed with revision rev.
func writeDigest(rec record, tx *bbolt.Tx, d digest, rev int64) error {
	return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaDigest), rec.seal([]byte(metaDigest), kindDigest, rev, d.encode()))
}
