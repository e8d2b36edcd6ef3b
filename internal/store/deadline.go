package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// WithDeadline returns st with a deadline of d on every call but Watch
// (a watch lasts as long as its context): a call the store does not answer
// in time fails with ErrUnavailable instead of hanging, so that a server
// whose store is unreachable answers "retry later" at once and works again
// by itself when the store is back.
func WithDeadline(st Store, d time.Duration) Store {
	return &deadline{Store: st, d: d}
}

type deadline struct {
	Store
	d time.Duration
}

// call runs f under the deadline and turns the deadline's own expiry
// (not the caller's) into ErrUnavailable.
func call[T any](s *deadline, ctx context.Context, what string, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, s.d)
	defer cancel()
	v, err := f(cctx)
	if err != nil && ctx.Err() == nil && (cctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)) && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%s: %w: no answer within %v: %w", what, ErrUnavailable, s.d, err)
	}
	return v, err
}

func (s *deadline) Get(ctx context.Context, key string) (Value, error) {
	return call(s, ctx, "get "+key, func(ctx context.Context) (Value, error) { return s.Store.Get(ctx, key) })
}

func (s *deadline) List(ctx context.Context, dir string) ([]Value, int64, error) {
	type out struct {
		vals []Value
		rev  int64
	}
	o, err := call(s, ctx, "list "+dir, func(ctx context.Context) (out, error) {
		v, r, err := s.Store.List(ctx, dir)
		return out{v, r}, err
	})
	return o.vals, o.rev, err
}

func (s *deadline) ListPage(ctx context.Context, dir, after string, limit int, rev int64) (Page, error) {
	return call(s, ctx, "list page "+dir, func(ctx context.Context) (Page, error) { return s.Store.ListPage(ctx, dir, after, limit, rev) })
}

func (s *deadline) Put(ctx context.Context, key string, data []byte, expect int64) (int64, error) {
	return call(s, ctx, "put "+key, func(ctx context.Context) (int64, error) { return s.Store.Put(ctx, key, data, expect) })
}

func (s *deadline) Delete(ctx context.Context, key string, expect int64) (int64, error) {
	return call(s, ctx, "delete "+key, func(ctx context.Context) (int64, error) { return s.Store.Delete(ctx, key, expect) })
}

func (s *deadline) Txn(ctx context.Context, ops ...Op) (int64, error) {
	return call(s, ctx, "txn", func(ctx context.Context) (int64, error) { return s.Store.Txn(ctx, ops...) })
}

// Watch starts the watch under the deadline (a backend may read the
// current revision first) and lets it run under ctx.
func (s *deadline) Watch(ctx context.Context, dir string, from int64) (<-chan Event, error) {
	if from != 0 {
		return s.Store.Watch(ctx, dir, from)
	}
	// The etcd backend reads "now" with the watch's own context; give that
	// read a deadline without ending the watch when it passes.
	type res struct {
		ch  <-chan Event
		err error
	}
	done := make(chan res, 1)
	go func() {
		ch, err := s.Store.Watch(ctx, dir, from)
		done <- res{ch, err}
	}()
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case r := <-done:
		return r.ch, r.err
	case <-t.C:
		// The watch may still start; drain it so its goroutines end with ctx.
		go func() {
			if r := <-done; r.err == nil {
				for range r.ch {
				}
			}
		}()
		return nil, fmt.Errorf("watch %s: %w: no answer within %v", dir, ErrUnavailable, s.d)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
