package image

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Progress receives byte counts while a blob is copied into the store or a
// layer is unpacked. Update is called with done == 0 when a blob starts,
// as bytes move (total is -1 when the size is not known in advance), and
// with done == total when the blob is complete; that last call may repeat.
// Calls for one blob come from one goroutine.
type Progress interface {
	Update(blob v1.Hash, done, total int64)
}

// ProgressFunc adapts a function to the Progress interface.
type ProgressFunc func(blob v1.Hash, done, total int64)

// Update calls f.
func (f ProgressFunc) Update(blob v1.Hash, done, total int64) { f(blob, done, total) }

// noProgress is used when the caller passes no Progress.
type noProgress struct{}

func (noProgress) Update(v1.Hash, int64, int64) {}

func progressOrNop(p Progress) Progress {
	if p == nil {
		return noProgress{}
	}
	return p
}

// meter is a reader that reports progress and stops when ctx is done.
type meter struct {
	ctx   context.Context
	r     io.Reader
	p     Progress
	blob  v1.Hash
	done  int64
	total int64
}

func (m *meter) Read(b []byte) (int, error) {
	if err := m.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := m.r.Read(b)
	if n > 0 {
		m.done += int64(n)
		m.p.Update(m.blob, m.done, m.total)
	}
	return n, err
}
