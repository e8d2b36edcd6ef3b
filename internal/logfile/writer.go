// Package logfile keeps a replica's standard output and error on disk in
// the kubelet's CRI log format, one record a line:
//
//	2026-12-04T05:06:07.123456789Z stdout F a whole line
//	2026-12-04T05:06:07.123456789Z stderr P the first part of a long line
//
// (F: the record ends a line the replica wrote; P: a part, continued by the
// next record of the same stream), so that --since and --timestamps work per
// line and the reader gives back exactly the bytes the replica wrote. The
// Writer caps the current file at a size and keeps one rotated segment
// (PATH.1), so one run's log takes at most twice the cap.
package logfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Stream names one of a replica's output streams.
type Stream string

// The two streams a replica writes.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Sizes.
const (
	// DefaultMaxSize is the default cap of the current file, as the
	// kubelet's containerLogMaxSize.
	DefaultMaxSize = 10 << 20
	// MaxLine is the longest record's content: a longer line is split into
	// P records, so a replica that never writes a newline can't hold an
	// unbounded buffer in the copier.
	MaxLine = 16 << 10
	// MinMaxSize is the smallest cap accepted: a few records of MaxLine.
	MinMaxSize = 4 * MaxLine
)

// TimeFormat is the records' timestamp: RFC 3339 with nanoseconds, fixed
// width and UTC, so records sort as text.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// ErrInvalid reports a bad argument (a cap below MinMaxSize).
var ErrInvalid = errors.New("invalid log option")

// Writer appends records to one run's log file and rotates it. It is safe
// for concurrent use by the streams of one replica.
type Writer struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
	now  func() time.Time
	err  error // the first write error; later writes return it
}

// Create opens (appending to) the log file at path, created 0600, capped at
// maxSize bytes (0: DefaultMaxSize).
func Create(path string, maxSize int64) (*Writer, error) {
	if maxSize == 0 {
		maxSize = DefaultMaxSize
	}
	if maxSize < MinMaxSize {
		return nil, fmt.Errorf("log max size %d: at least %d bytes: %w", maxSize, MinMaxSize, ErrInvalid)
	}
	w := &Writer{path: path, max: maxSize, now: time.Now}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// record writes one record, rotating first when it would pass the cap.
func (w *Writer) record(s Stream, tag byte, content []byte, at time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.f == nil {
		return fmt.Errorf("write log %s: %w", w.path, os.ErrClosed)
	}
	var b bytes.Buffer
	b.Grow(len(TimeFormat) + len(s) + len(content) + 5)
	b.WriteString(at.UTC().Format(TimeFormat))
	b.WriteByte(' ')
	b.WriteString(string(s))
	b.WriteByte(' ')
	b.WriteByte(tag)
	b.WriteByte(' ')
	b.Write(content)
	b.WriteByte('\n')
	if w.size > 0 && w.size+int64(b.Len()) > w.max {
		if err := w.rotate(); err != nil {
			w.err = err
			return err
		}
	}
	n, err := w.f.Write(b.Bytes())
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write log %s: %w", w.path, err)
	}
	return w.err
}

// rotate moves the current file to PATH.1, replacing the older segment.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	w.f = nil
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	return w.open()
}

// Close closes the file. Streams must be closed first (their last partial
// line is written then).
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Stream returns a writer for one stream of the replica: it turns what it
// is given into records, F for each line it ends and P for a line longer
// than MaxLine, and keeps an unfinished line until its end comes, MaxLine
// is reached or the stream is closed (then it is written as P: the replica
// wrote no newline). Not safe for concurrent use; one per stream.
func (w *Writer) Stream(s Stream) io.WriteCloser {
	return &streamWriter{w: w, s: s}
}

type streamWriter struct {
	w       *Writer
	s       Stream
	pending []byte
	at      time.Time // when the pending line's first bytes came
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	now := sw.w.now()
	n := len(p)
	for len(p) > 0 {
		if len(sw.pending) == 0 {
			sw.at = now
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := MaxLine - len(sw.pending)
			if len(p) < room {
				sw.pending = append(sw.pending, p...)
				return n, nil
			}
			sw.pending = append(sw.pending, p[:room]...)
			p = p[room:]
			if err := sw.flush('P'); err != nil {
				return 0, err
			}
			continue
		}
		line := p[:i]
		p = p[i+1:]
		for len(sw.pending)+len(line) > MaxLine {
			room := MaxLine - len(sw.pending)
			sw.pending = append(sw.pending, line[:room]...)
			line = line[room:]
			if err := sw.flush('P'); err != nil {
				return 0, err
			}
			sw.at = now
		}
		sw.pending = append(sw.pending, line...)
		if err := sw.flush('F'); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (sw *streamWriter) flush(tag byte) error {
	err := sw.w.record(sw.s, tag, sw.pending, sw.at)
	sw.pending = sw.pending[:0]
	return err
}

// Close writes an unfinished line as a P record.
func (sw *streamWriter) Close() error {
	if len(sw.pending) == 0 {
		return nil
	}
	return sw.flush('P')
}
