// Package etcd is the store.Store on a real etcd cluster, for running rung
// beyond one machine (`--store etcd://HOST:PORT,...`). Consensus, fsync and
// replication are etcd's; this package maps the store's keys, revisions,
// preconditions and watches onto etcd's, one to one: a key's revision is
// its etcd mod_revision, a Txn is one etcd transaction.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"rung.dev/rung/internal/store"
)

// Config says which cluster to use and where in its key space.
type Config struct {
	// Endpoints are the cluster's client URLs or host:port pairs.
	Endpoints []string
	// Prefix is put before every key, so that several rung installations
	// (or tests) can share one cluster; "" or a valid key such as /rung.
	Prefix string
	// DialTimeout bounds connecting at Open; 0 means 5s.
	DialTimeout time.Duration
	// Logger receives connection-level reports; nil discards them.
	Logger *slog.Logger
}

// ParseURL parses the --store flag's form,
// etcd://HOST:PORT[,HOST:PORT...][/PREFIX], into a Config.
func ParseURL(s string) (Config, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return Config{}, fmt.Errorf("store URL %q: want etcd://HOST:PORT[,HOST:PORT...][/PREFIX]: %w", s, store.ErrInvalid)
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	var cfg Config
	for h := range strings.SplitSeq(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || port == "" {
			return Config{}, fmt.Errorf("store URL %q: endpoint %q: want HOST:PORT: %w", s, h, store.ErrInvalid)
		}
		cfg.Endpoints = append(cfg.Endpoints, (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}).String())
	}
	if prefix != "" {
		cfg.Prefix = "/" + strings.TrimSuffix(prefix, "/")
	}
	if err := validPrefix(cfg.Prefix); err != nil {
		return Config{}, fmt.Errorf("store URL %q: %w", s, err)
	}
	return cfg, nil
}

func validPrefix(p string) error {
	if p == "" {
		return nil
	}
	if err := store.ValidateKey(p); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// Store is a store.Store on an etcd cluster. It is safe for concurrent
// use.
type Store struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger

	mu        sync.Mutex // orders starting watches against Close
	closed    atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	watches   sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

// Open connects to the cluster and checks that it answers within
// cfg.DialTimeout.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("open etcd store: no endpoints: %w", store.ErrInvalid)
	}
	if err := validPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		MaxCallSendMsgSize:   2 << 20,
		Logger:               zap.NewNop(),
		// Reconnect within a couple of seconds of a member coming back,
		// not after gRPC's default back-off of up to two minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("open etcd store %v: %w", cfg.Endpoints, err)
	}
	s := &Store{cli: cli, prefix: cfg.Prefix, log: log, done: make(chan struct{})}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, s.prefix+"/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("open etcd store %v: %w", cfg.Endpoints, s.mapErr(err))
	}
	log.Info("connected to etcd", "endpoints", cfg.Endpoints, "prefix", cfg.Prefix)
	return s, nil
}

// Client is the underlying etcd client, for operations outside the store
// interface (compaction, cluster status).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close ends open watches and closes the connection. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.done)
		s.mu.Unlock()
		s.watches.Wait()
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			s.closeErr = fmt.Errorf("close etcd store: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// mapErr turns client and server errors into the store's sentinels.
func (s *Store) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case s.closed.Load():
		return fmt.Errorf("%w: %w", store.ErrClosed, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("etcd: %w: %w", store.ErrTooLarge, err)
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("etcd: %w: %w", store.ErrCompacted, err)
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Canceled:
			return fmt.Errorf("etcd: %w", context.Canceled)
		case codes.ResourceExhausted:
			return fmt.Errorf("etcd: %w: %s", store.ErrTooLarge, st.Message())
		case codes.Unavailable, codes.DeadlineExceeded:
			// No member answers (or none has a leader): worth a retry.
			return fmt.Errorf("etcd: %w: %s", store.ErrUnavailable, st.Message())
		}
	}
	return fmt.Errorf("etcd: %w", err)
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, key string) (store.Value, error) {
	if err := s.usable(ctx); err != nil {
		return store.Value{}, err
	}
	if err := store.ValidateKey(key); err != nil {
		return store.Value{}, fmt.Errorf("get: %w", err)
	}
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return store.Value{}, fmt.Errorf("get %q: %w", key, s.mapErr(err))
	}
	if len(resp.Kvs) == 0 {
		return store.Value{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return store.Value{Key: key, Data: nonNil(kv.Value), Revision: kv.ModRevision}, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// listPage is how many keys one List request reads; a List is several
// requests at one revision, so it is still one consistent snapshot.
const listPage = 1000

// List implements store.Reader.
func (s *Store) List(ctx context.Context, dir string) ([]store.Value, int64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, 0, err
	}
	prefix, err := store.DirPrefix(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("list: %w", err)
	}
	full := s.prefix + prefix
	end := clientv3.GetPrefixRangeEnd(full)
	var (
		out []store.Value
		rev int64
	)
	from := full
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("list %q: %w", dir, s.mapErr(err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			out = append(out, store.Value{Key: strings.TrimPrefix(string(kv.Key), s.prefix), Data: nonNil(kv.Value), Revision: kv.ModRevision})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// ListPage implements store.Pager: one range request at rev (etcd keeps
// old revisions until compaction).
func (s *Store) ListPage(ctx context.Context, dir, after string, limit int, rev int64) (store.Page, error) {
	if err := s.usable(ctx); err != nil {
		return store.Page{}, err
	}
	prefix, err := store.CheckPage(dir, after, limit, rev)
	if err != nil {
		return store.Page{}, err
	}
	full := s.prefix + prefix
	from := full
	if after != "" {
		from = s.prefix + after + "\x00"
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(full)), clientv3.WithLimit(int64(limit))}
	if rev != 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Get(ctx, from, opts...)
	if err != nil {
		if errors.Is(err, rpctypes.ErrFutureRev) {
			return store.Page{}, fmt.Errorf("list page %q: revision %d is in the future: %w", dir, rev, store.ErrInvalid)
		}
		return store.Page{}, fmt.Errorf("list page %q: %w", dir, s.mapErr(err))
	}
	page := store.Page{Revision: rev, More: resp.More}
	if rev == 0 {
		page.Revision = resp.Header.Revision
	}
	for _, kv := range resp.Kvs {
		page.Values = append(page.Values, store.Value{Key: strings.TrimPrefix(string(kv.Key), s.prefix), Data: nonNil(kv.Value), Revision: kv.ModRevision})
	}
	return page, nil
}

// Put implements store.Writer.
func (s *Store) Put(ctx context.Context, key string, data []byte, expect int64) (int64, error) {
	return s.apply(ctx, true, store.PutOp(key, data, expect))
}

// Delete implements store.Writer.
func (s *Store) Delete(ctx context.Context, key string, expect int64) (int64, error) {
	return s.apply(ctx, true, store.DeleteOp(key, expect))
}

// Txn implements store.Writer.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	return s.apply(ctx, false, ops...)
}

// apply validates ops and runs them as one etcd transaction: every
// precondition is a comparison; when one fails, the Else branch reads the
// compared keys so that the error can say which and why, from the same
// revision. single says ops are a lone Put or Delete.
func (s *Store) apply(ctx context.Context, single bool, ops ...store.Op) (int64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	if err := store.Validate(single, ops); err != nil {
		return 0, err
	}
	var (
		cmps     []clientv3.Cmp
		thens    []clientv3.Op
		elses    []clientv3.Op
		compared []int // index into ops of each Else read
	)
	for i, op := range ops {
		k := s.prefix + op.Key
		var cmp *clientv3.Cmp
		switch {
		case op.Expect == store.Create:
			c := clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
			cmp = &c
		case op.Expect > 0:
			c := clientv3.Compare(clientv3.ModRevision(k), "=", op.Expect)
			cmp = &c
		case op.Kind == store.OpDelete: // Any: the key must exist
			c := clientv3.Compare(clientv3.CreateRevision(k), ">", 0)
			cmp = &c
		}
		if cmp != nil {
			cmps = append(cmps, *cmp)
			elses = append(elses, clientv3.OpGet(k, clientv3.WithKeysOnly()))
			compared = append(compared, i)
		}
		switch op.Kind {
		case store.OpPut:
			thens = append(thens, clientv3.OpPut(k, string(op.Data)))
		case store.OpDelete:
			thens = append(thens, clientv3.OpDelete(k))
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(thens...).Else(elses...).Commit()
	if err != nil {
		what := "txn"
		if single {
			what = fmt.Sprintf("%s %q", ops[0].Kind, ops[0].Key)
		}
		return 0, fmt.Errorf("%s: %w", what, s.mapErr(err))
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	for j, r := range resp.Responses {
		i := compared[j]
		var cur int64
		if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
			cur = kvs[0].ModRevision
		}
		idx := i
		if single {
			idx = -1
		}
		if err := store.CheckPrecondition(idx, ops[i], cur); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("txn: a precondition failed at revision %d: %w", resp.Header.Revision, store.ErrConflict)
}

// watchBuffer is the capacity of a watch's channel.
const watchBuffer = 64

// Watch implements store.Watcher. The watch requires a leader: a member
// cut off from its cluster ends the watch with an error rather than
// going quiet, and the caller watches again from its last revision + 1.
func (s *Store) Watch(ctx context.Context, dir string, from int64) (<-chan store.Event, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	prefix, err := store.WatchPrefix(dir, from)
	if err != nil {
		return nil, err
	}
	full := s.prefix + prefix
	if from == 0 {
		// etcd starts a watch without a revision when the server gets it,
		// later than this call returns; pin "now" first.
		resp, err := s.cli.Get(ctx, full, clientv3.WithCountOnly(), clientv3.WithPrefix())
		if err != nil {
			return nil, fmt.Errorf("watch %q: %w", dir, s.mapErr(err))
		}
		from = resp.Header.Revision + 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, full, clientv3.WithPrefix(), clientv3.WithRev(from))
	ch := make(chan store.Event, watchBuffer)
	s.watches.Add(1)
	go func() {
		defer s.watches.Done()
		defer close(ch)
		defer cancel()
		if err := s.follow(ctx, wch, ch); err != nil {
			select {
			case ch <- store.Event{Err: fmt.Errorf("watch %q: %w", dir, err)}:
			default:
			}
		}
	}()
	return ch, nil
}

// follow forwards etcd's watch responses as store events until ctx ends
// (nil), the store closes (ErrClosed) or the watch fails.
func (s *Store) follow(ctx context.Context, wch clientv3.WatchChan, ch chan<- store.Event) error {
	for {
		var (
			resp clientv3.WatchResponse
			ok   bool
		)
		select {
		case resp, ok = <-wch:
		case <-ctx.Done():
			return nil
		case <-s.done:
			return store.ErrClosed
		}
		switch {
		case !ok && ctx.Err() != nil:
			return nil
		case !ok:
			return fmt.Errorf("etcd watch channel closed: %w", store.ErrClosed)
		case resp.CompactRevision != 0:
			return fmt.Errorf("history before %d compacted: %w", resp.CompactRevision, store.ErrCompacted)
		case resp.Err() != nil:
			return s.mapErr(resp.Err())
		}
		for _, ev := range resp.Events {
			e := store.Event{Type: store.EventPut, Value: store.Value{
				Key:      strings.TrimPrefix(string(ev.Kv.Key), s.prefix),
				Data:     nonNil(ev.Kv.Value),
				Revision: ev.Kv.ModRevision,
			}}
			if ev.Type == clientv3.EventTypeDelete {
				e.Type, e.Value.Data = store.EventDelete, nil
			}
			select {
			case ch <- e:
			case <-ctx.Done():
				return nil
			case <-s.done:
				return store.ErrClosed
			}
		}
	}
}
