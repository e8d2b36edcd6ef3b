// Package server is rung's control-plane HTTP API (/v1/...): objects
// (Tenant, Workload, Topology, Policy) with apply, get, list and delete,
// the placement view, events and tokens, behind bearer-token
// authentication and role-based access, with every change and denial in
// the audit log and Prometheus metrics at /metrics.
//
// It knows the store only through store.Store and the audit log only
// through AuditLog; which backends they are is decided in internal/app.
package server

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/secret"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// Config is what a Server needs. Store and Audit are required.
type Config struct {
	Store store.Store
	Audit AuditLog
	// Registry receives the server's metrics and is served at /metrics;
	// nil makes a new one. The default Prometheus registry is never used.
	Registry *prometheus.Registry
	// Logger gets request failures and background errors; nil discards.
	Logger *slog.Logger
	// Runtimes are the tiers a node offers when its Topology lists none
	// (default: topology.DefaultRuntimes).
	Runtimes tenancy.Set
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Random is the source of token secrets (default crypto/rand).
	Random io.Reader
	// NodeTimeout is how long a node agent may go without a heartbeat
	// before its node is down (default DefaultNodeTimeout; see nodes.go).
	NodeTimeout time.Duration
	// ReservedPorts are ports rung listens on at node addresses (the
	// API's, metrics'): no workload may publish them as node ports
	// (crossrefs.go). DefaultAPIPort is always reserved.
	ReservedPorts []int
	// Limits are the rate limits (ratelimit.go); zero fields take defaults.
	Limits Limits
	// OIDC, when set, also lets in JWTs its issuer signed (DESIGN §11).
	OIDC *auth.OIDC
	// OnAdminToken is called with a new admin token after
	// POST /v1/tokens/admin/rotate, to write it where rung up keeps it.
	OnAdminToken func(ctx context.Context, token string) error
	// AdminTokenName names the admin token rotation makes (default
	// "admin"); rung up passes the one it gives IssueAdminToken.
	AdminTokenName string
	// Secrets seals and opens Secret values; nil refuses secrets (503).
	Secrets *secret.Keyring
	// StoreTimeout bounds every store call (default DefaultStoreTimeout):
	// with the store unreachable, requests answer 503 with Retry-After
	// instead of hanging. Give the audit log a store wrapped the same way
	// (store.WithDeadline).
	StoreTimeout time.Duration
	// PipelineBatches prepares a tenant's next batch of applies while the
	// one before commits (batch.go). It pays when a commit waits on a
	// round trip (etcd); on the embedded store, whose commits are mostly
	// CPU, it made batches smaller and writes no faster.
	PipelineBatches bool
	// Elector elects the one server of several on one store that schedules
	// (leader.go); nil: this server always leads (the embedded store).
	Elector leader.Elector
	// Cluster, when set, gives the topology and the nodes that are down,
	// read off a Kubernetes cluster (rung up --backend kubernetes): the
	// planner plans on it instead of stored Topology objects.
	Cluster func() (v1.Topology, []string)
}

// DefaultStoreTimeout is Config.StoreTimeout's default: a request fails at
// its first store call that gets no answer, well within the 5 s DESIGN §11
// allows.
const DefaultStoreTimeout = 2 * time.Second

// Server serves the API. Create it with New, serve Handler, and call Run
// for the background scheduler loop.
type Server struct {
	store   store.Store
	audit   AuditLog
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	planner *planner
	// admission runs the built-in workload checks (CIS Docker, Pod
	// Security restricted) on every applied workload; the node runs them
	// again with the runtime spec before it creates a replica.
	admission *policy.Engine
	now       func() time.Time
	random    io.Reader
	mux       *http.ServeMux
	ready     atomic.Bool
	nodes     *nodes // node agents' heartbeats (nodes.go)
	// closing is closed when Run ends: node tunnels close with it.
	closing     chan struct{}
	closingOnce sync.Once
	sessions    uiSessions // the dashboard's sign-ins (dashboard.go)

	oidc         *auth.OIDC
	onAdminToken func(context.Context, string) error
	adminName    string
	keyring      *secret.Keyring
	limitCfg     Limits
	reserved     []int // Config.ReservedPorts
	limits       *rateLimits
	denied       denials // refused requests not yet in the audit log

	// tenantLocks serialize this process's writes about one tenant
	// (striped by a hash of its name).
	tenantLocks [64]sync.Mutex
	lockSeed    maphash.Seed
	// applyQueues are the workload applies waiting for their stripe's
	// next batch (batch.go).
	applyQueues [64]applyQueue
	pipelined   atomic.Int64 // batches prepared while the one before committed
	pipeline    bool         // Config.PipelineBatches

	elector leader.Elector // leader.go
	leading atomic.Bool

	lists   listGate     // lists served at once (listing.go)
	snaps   *listCache   // list snapshots (listcache.go); nil without change tracking
	writing atomic.Int64 // requests other than GET in flight
}

// New builds a server on cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Audit == nil {
		return nil, errors.New("server: Store and Audit are required")
	}
	s := &Server{
		store: store.WithDeadline(cfg.Store, cmp.Or(cfg.StoreTimeout, DefaultStoreTimeout)), audit: cfg.Audit, log: cfg.Logger, reg: cfg.Registry,
		now: cfg.Now, random: cfg.Random, mux: http.NewServeMux(), lockSeed: maphash.MakeSeed(),
		oidc: cfg.OIDC, onAdminToken: cfg.OnAdminToken, adminName: cmp.Or(cfg.AdminTokenName, "admin"), limitCfg: cfg.Limits.withDefaults(), keyring: cfg.Secrets,
		closing: make(chan struct{}), reserved: slices.Clone(cfg.ReservedPorts),
		pipeline: cfg.PipelineBatches,
	}
	s.lists = newListGate(listSlots(), &s.writing)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.random == nil {
		s.random = rand.Reader
	}
	if ct, ok := cfg.Store.(store.ChangeTracker); ok {
		s.snaps = newListCache(ct, s.now, s.readSnapshot)
	}
	m, err := newMetrics(s.reg)
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s.metrics = m
	s.limits = newRateLimits(s.limitCfg, s.now)
	runtimes := cfg.Runtimes
	if runtimes == 0 {
		runtimes = topology.DefaultRuntimes
	}
	s.nodes = newNodes(cfg.NodeTimeout, s.now)
	lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = s.loadNodes(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("server: load nodes: %w", err)
	}
	s.planner = newPlanner(s.store, runtimes, m, s.log)
	// Node liveness (nodes.go): plan with silent nodes down, and look
	// again a few times per timeout even when nothing stored changed.
	s.planner.down, s.planner.recheck = s.nodes.down, s.nodes.timeout/4
	s.planner.detected = s.nodes.runtimes
	s.planner.ready = s.nodes.readiness
	s.planner.cluster = cfg.Cluster
	if err := s.reg.Register(replicaCollector{s}); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	if s.admission, err = policy.New(policy.Config{}); err != nil {
		return nil, fmt.Errorf("server: admission: %w", err)
	}
	if err := s.initLeader(cfg.Elector); err != nil {
		return nil, err
	}
	s.routes()
	s.ready.Store(true)
	return s, nil
}

// Handler is the whole API, /metrics and health checks.
func (s *Server) Handler() http.Handler { return s.mux }

// Run keeps the stored plan up to date with the stored objects until ctx
// is done. The API works without it: GET /v1/plan plans on demand. With
// an Elector, Run campaigns first and plans only while it leads; until
// then the server serves the plan the leader stored (leader.go).
func (s *Server) Run(ctx context.Context) error {
	defer s.closingOnce.Do(func() { close(s.closing) })
	done := make(chan struct{})
	go func() { defer close(done); s.runDenials(ctx) }()
	err := s.lead(ctx)
	<-done
	return err
}

// Current returns the plan of everything stored and the objects it was
// made from, for this machine's node agent (planning again only when
// something changed). Callers must not modify either.
func (s *Server) Current(ctx context.Context) (*v1.Set, *scheduler.Result, error) {
	pl, err := s.planner.current(ctx)
	if err != nil {
		return nil, nil, err
	}
	return pl.set, pl.result, nil
}

// Desired returns the replicas node must run under the current plan ("":
// every node, for rung up's own agent standing for them), each with the
// version of its workload it runs (rollouts).
func (s *Server) Desired(ctx context.Context, node string) ([]replica.Spec, error) {
	pl, err := s.planner.current(ctx)
	if err != nil {
		return nil, err
	}
	return agent.FromPlanWith(pl.set, pl.result, node, pl.templates)
}

// SetReady marks the server ready or not for /readyz (e.g. false while
// shutting down).
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// handlerFunc is an HTTP handler that returns its error instead of
// writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routes registers every endpoint. Each path also gets a method-less
// fallback so that a wrong method gets a JSON 405 naming the right ones.
func (s *Server) routes() {
	methods := map[string][]string{}
	var order []string
	handle := func(pattern string, authn bool, h handlerFunc) {
		method, path, _ := strings.Cut(pattern, " ")
		if _, ok := methods[path]; !ok {
			order = append(order, path)
		}
		methods[path] = append(methods[path], method)
		if method != http.MethodGet {
			h = s.countWrite(h) // inside authenticate: only callers with a token slow lists
		}
		if authn {
			h = s.authenticate(h)
		}
		s.mux.Handle(pattern, s.wrap(path, h))
	}
	handle("GET /healthz", false, s.healthz)
	handle("GET /readyz", false, s.readyz)
	handle("GET /metrics", true, s.serveMetrics())

	handle("GET /v1/whoami", true, s.whoami)
	handle("POST /v1/tokens", true, s.createToken) // tokens.go
	handle("GET /v1/tokens", true, s.listTokens)
	handle("DELETE /v1/tokens/{id}", true, s.revokeToken)
	handle("POST /v1/tokens/admin/rotate", true, s.rotateAdmin)
	handle("GET /v1/secrets", true, s.listSecrets) // secrets.go
	handle("GET /v1/tenants/{tenant}/secrets", true, s.listSecrets)
	handle("GET /v1/tenants/{tenant}/secrets/{name}", true, s.getSecret)
	handle("PUT /v1/tenants/{tenant}/secrets/{name}", true, s.applySecret)
	handle("DELETE /v1/tenants/{tenant}/secrets/{name}", true, s.deleteSecret)
	handle("POST /v1/secrets/rotate-key", true, s.rotateSecretKey)
	handle("GET /v1/plan", true, s.plan)
	handle("GET /v1/events", true, s.events)
	// Node agents (nodes.go).
	handle("GET /v1/nodes", true, s.listNodes)
	handle("GET /v1/leader", true, s.getLeader)
	handle("PUT /v1/nodes/{name}/heartbeat", true, s.heartbeat)
	handle("GET /v1/nodes/{name}/replicas", true, s.nodeReplicas)
	handle("GET /v1/nodes/{name}/peers", true, s.nodePeers)                        // network.go
	handle("GET /v1/nodes/{name}/tunnel", true, s.nodeTunnel)                      // tunnel.go
	handle("GET /v1/nodes/{name}/secrets/{tenant}/{secret}", true, s.nodeSecret)   // nodes.go
	handle("GET /v1/nodes/{name}/volumedeletions", true, s.nodeVolumeDeletions)    // volumes.go
	handle("GET /v1/tenants/{tenant}/workloads/{name}/logs", true, s.workloadLogs) // logs.go
	// Replicas and their status (replicas.go).
	handle("GET /v1/replicas", true, s.listReplicas)
	handle("GET /v1/tenants/{tenant}/replicas", true, s.listReplicas)
	handle("GET /v1/tenants/{tenant}/workloads/{name}/replicas", true, s.listReplicas)
	handle("GET /v1/tenants/{tenant}/workloads/{name}/rollout", true, s.workloadRollout)           // rollouts.go
	handle("GET /v1/tenants/{tenant}/workloads/{name}/replicas/{index}/exec", true, s.execReplica) // exec.go
	handle("GET /v1/tenants/{tenant}/workloads/{name}/replicas/{index}/log", true, s.replicaLog)   // replicalog.go

	for _, k := range kinds {
		if k.tenanted {
			handle("GET /v1/"+k.plural, true, s.list(k))
			handle("GET /v1/tenants/{tenant}/"+k.plural, true, s.list(k))
			item := "/v1/tenants/{tenant}/" + k.plural + "/{name}"
			handle("GET "+item, true, s.get(k))
			handle("PUT "+item, true, s.apply(k))
			handle("DELETE "+item, true, s.delete(k))
			continue
		}
		handle("GET /v1/"+k.plural, true, s.list(k))
		item := "/v1/" + k.plural + "/{name}"
		handle("GET "+item, true, s.get(k))
		handle("PUT "+item, true, s.apply(k))
		handle("DELETE "+item, true, s.delete(k))
	}

	for _, path := range order {
		allowed := strings.Join(methods[path], ", ")
		s.mux.Handle(path, s.wrap(path, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allowed)
			return newError(http.StatusMethodNotAllowed, wire.CodeMethod,
				"method %s not allowed on %s; use %s", r.Method, path, allowed)
		}))
	}
	s.dashboardRoutes()
	s.mux.Handle("/", s.wrap("other", func(w http.ResponseWriter, r *http.Request) error {
		return newError(http.StatusNotFound, wire.CodeNotFound,
			"no such endpoint %s; the API is under /v1/ (e.g. GET /v1/workloads)", truncate(r.URL.Path, 80))
	}))
}

// countWrite counts a write in flight while h runs: lists make way for
// writes (listing.go).
func (s *Server) countWrite(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		s.writing.Add(1)
		defer s.writing.Add(-1)
		return h(w, r)
	}
}

// wrap adds what every request gets: a request ID, a recovered panic,
// the latency metric by route and code, and errors written as JSON.
func (s *Server) wrap(route string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newRequestID()
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		r = r.WithContext(ctx)
		w.Header().Set("Rung-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "id", id, "path", r.URL.Path, "panic", p)
				if !sw.wrote {
					writeError(sw, r, s.log, fmt.Errorf("panic: %v", p))
				}
			}
			s.metrics.observe(route, r.Method, sw.status, time.Since(start))
		}()
		if err := h(sw, r); err != nil {
			if sw.wrote {
				s.log.Warn("error after response started", "id", id, "path", r.URL.Path, "err", err)
				return
			}
			writeError(sw, r, s.log, err)
		}
	})
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection over (exec's WebSocket upgrade).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection can't be hijacked")
	}
	if !w.wrote {
		w.status, w.wrote = http.StatusSwitchingProtocols, true
	}
	return h.Hijack()
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type requestIDKey struct{}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz answers 200 once the server can serve requests: it is ready and
// its store answers a read.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if !s.ready.Load() {
		return newError(http.StatusServiceUnavailable, wire.CodeUnavailable, "not ready")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.store.Get(ctx, tenantsDir+"/-"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return &httpError{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable, Msg: "store not ready", Err: err, RetryAfter: storeRetryAfter}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// serveMetrics serves /metrics to operators (node use and request
// counts of every tenant are in it).
func (s *Server) serveMetrics() handlerFunc {
	h := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.authorize(r.Context(), auth.Get, auth.Object{Kind: auth.KindMetrics}, ""); err != nil {
			return err
		}
		h.ServeHTTP(w, r)
		return nil
	}
}

// MetricsHandler serves the metrics without a token, for a separate
// listen address only the operator's scraper reaches.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func lower(kind string) string { return strings.ToLower(kind) }
