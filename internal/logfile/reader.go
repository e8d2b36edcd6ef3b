package logfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ErrNoLog: there is no log at that path (the replica never started here,
// or its log was deleted).
var ErrNoLog = errors.New("no log")

// ReadOptions choose what Open returns, as `kubectl logs` does.
type ReadOptions struct {
	// Tail is how many of the last lines to return; 0 or less: all.
	Tail int
	// Since leaves out lines written before it; zero: none left out.
	Since time.Time
	// Follow keeps the reader open and returns new lines as they are
	// written, until ctx ends, the reader is closed or the log is removed.
	Follow bool
	// Timestamps starts each line with its time (TimeFormat) and a space.
	Timestamps bool
	// Previous is for the caller that knows where the previous run's log
	// is (Open reads the path it is given).
	Previous bool
}

// PollInterval is how often a following reader looks for new records.
var PollInterval = 100 * time.Millisecond

// Open returns the replica's output logged at path (and PATH.1 before it):
// the bytes the replica wrote, stdout and stderr interleaved as they came,
// chosen by o. It fails with ErrNoLog when neither file exists.
func Open(ctx context.Context, path string, o ReadOptions) (io.ReadCloser, error) {
	cur, err := os.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open log: %w", err)
	}
	old, oerr := os.Open(path + ".1")
	if oerr != nil && !errors.Is(oerr, os.ErrNotExist) {
		if cur != nil {
			cur.Close()
		}
		return nil, fmt.Errorf("open log: %w", oerr)
	}
	if cur == nil && old == nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNoLog)
	}
	if cur != nil && old != nil && sameFile(cur, old) {
		// Rotated between the two opens: what we opened first is PATH.1 now.
		cur.Close()
		if cur, err = os.Open(path); err != nil {
			cur = nil
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	r := &reader{path: path, o: o, out: pw}
	go func() {
		err := r.run(ctx, old, cur)
		pw.CloseWithError(err)
	}()
	return &readCloser{PipeReader: pr, cancel: cancel}, nil
}

type readCloser struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (rc *readCloser) Close() error {
	rc.cancel()
	return rc.PipeReader.Close()
}

// reader turns records into the replica's lines.
type reader struct {
	path    string
	o       ReadOptions
	out     *io.PipeWriter
	pending map[Stream]*line // lines whose P records came, F not yet
	tail    [][]byte         // the last o.Tail lines, while reading what exists
	tailing bool
}

type line struct {
	at  time.Time
	buf []byte
}

func (r *reader) run(ctx context.Context, old, cur *os.File) error {
	r.pending = map[Stream]*line{}
	r.tailing = r.o.Tail > 0
	if old != nil {
		err := r.scan(bufio.NewReader(old), nil)
		old.Close()
		if err != nil {
			if cur != nil {
				cur.Close()
			}
			return err
		}
	}
	var partial []byte // a record still being written at the end of cur
	var br *bufio.Reader
	if cur != nil {
		defer func() { cur.Close() }()
		br = bufio.NewReader(cur)
		if err := r.scan(br, &partial); err != nil {
			return err
		}
	}
	if r.tailing {
		r.tailing = false
		for _, l := range r.tail {
			if _, err := r.out.Write(l); err != nil {
				return err
			}
		}
		r.tail = nil
	}
	if !r.o.Follow {
		return r.flushPending()
	}
	missing := 0
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if cur != nil {
			if err := r.scan(br, &partial); err != nil {
				return err
			}
		}
		fi, err := os.Stat(r.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Gone: removed, or moved aside as the previous run's log. A
			// rotation leaves the path missing for an instant only.
			if missing++; missing >= 3 {
				if cur != nil {
					if err := r.scan(br, &partial); err != nil {
						return err
					}
				}
				return r.flushPending()
			}
			continue
		case err != nil:
			return err
		}
		missing = 0
		if cur != nil {
			cfi, err := cur.Stat()
			if err == nil && os.SameFile(fi, cfi) {
				continue
			}
			// Rotated: finish the old file, then go on in the new one.
			if err := r.scan(br, &partial); err != nil {
				return err
			}
			cur.Close()
			partial = partial[:0]
		}
		if cur, err = os.Open(r.path); err != nil {
			cur = nil
			continue
		}
		br = bufio.NewReader(cur)
	}
}

// scan reads records up to the end of br. With partial non-nil, an
// unterminated last record is kept there to be completed by the next scan
// (the writer is appending it); else it is dropped.
func (r *reader) scan(br *bufio.Reader, partial *[]byte) error {
	for {
		b, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if partial != nil {
				*partial = append(*partial, b...)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if partial != nil && len(*partial) > 0 {
			b = append(*partial, b...)
			*partial = (*partial)[:0]
		}
		if err := r.record(b[:len(b)-1]); err != nil {
			return err
		}
	}
}

// record takes one record; a malformed one (not written by Writer) is
// skipped.
func (r *reader) record(b []byte) error {
	f := bytes.SplitN(b, []byte{' '}, 4)
	if len(f) < 3 {
		return nil
	}
	at, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return nil
	}
	s := Stream(f[1])
	if s != Stdout && s != Stderr {
		return nil
	}
	var content []byte
	if len(f) == 4 {
		content = f[3]
	}
	l := r.pending[s]
	if l == nil {
		l = &line{at: at}
		r.pending[s] = l
	}
	l.buf = append(l.buf, content...)
	switch string(f[2]) {
	case "P":
		if len(l.buf) < 1<<20 { // a line without end: pass it on in parts
			return nil
		}
	case "F":
		l.buf = append(l.buf, '\n')
	default:
		delete(r.pending, s)
		return nil
	}
	delete(r.pending, s)
	return r.emit(l)
}

func (r *reader) emit(l *line) error {
	if !r.o.Since.IsZero() && l.at.Before(r.o.Since) {
		return nil
	}
	out := l.buf
	if r.o.Timestamps {
		out = append([]byte(l.at.UTC().Format(TimeFormat)+" "), out...)
	}
	if r.tailing {
		r.tail = append(r.tail, out)
		if len(r.tail) > r.o.Tail {
			r.tail = r.tail[1:]
		}
		return nil
	}
	_, err := r.out.Write(out)
	return err
}

// flushPending passes on lines that ended without a newline.
func (r *reader) flushPending() error {
	for _, s := range []Stream{Stdout, Stderr} {
		if l := r.pending[s]; l != nil {
			delete(r.pending, s)
			if err := r.emit(l); err != nil {
				return err
			}
		}
	}
	return nil
}

func sameFile(a, b *os.File) bool {
	fa, err1 := a.Stat()
	fb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
