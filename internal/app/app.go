// Package app wires rung's control plane together: config → store →
// audit log → API server and scheduler → HTTP listener. It is the only
// package that names store backends.
package app

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/agent"
	kube "rung.dev/rung/internal/engine/kubernetes"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/microvm"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/secret"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/bolt"
	"rung.dev/rung/internal/store/etcd"
)

// Defaults of Config.
const (
	// DefaultDataDir is the data directory, shared with the node's image
	// store and `rung audit verify`.
	DefaultDataDir = "/var/lib/rung"
	DefaultListen  = "127.0.0.1:7440"
	// AdminTokenFile is the admin token's file in the data directory.
	AdminTokenFile = "admin.token"
	// ClientConfigFile is the client config written in the data directory.
	ClientConfigFile = "client.json"
	// SecretKeyFile is the secrets' keyring in the data directory.
	SecretKeyFile = "secrets.key"
)

// Config is how `rung up` runs. The zero value of a field means its
// default. It is read from a config file (JSON or YAML) and flags.
type Config struct {
	// DataDir holds the embedded store, the admin token and a client
	// config (default /var/lib/rung).
	DataDir string `json:"dataDir,omitempty"`
	// Listen is the API's address (default 127.0.0.1:7440; port 0 picks one).
	Listen string `json:"listen,omitempty"`
	// Store is "bolt" (the embedded store in DataDir, the default) or
	// etcd://HOST:PORT[,HOST:PORT...][/PREFIX].
	Store string `json:"store,omitempty"`
	// ClientConfig is where to write the client config besides DataDir
	// (default $RUNG_CONFIG or ~/.config/rung/config.json; "-" for nowhere).
	ClientConfig string `json:"clientConfig,omitempty"`
	// ShutdownTimeout bounds a graceful shutdown (default 10s).
	ShutdownTimeout Duration `json:"shutdownTimeout,omitempty"`
	// Agent runs this machine's node agent in the process: it starts the
	// planned replicas with runc and runsc and keeps them reconciled.
	Agent bool `json:"agent,omitempty"`
	// Node is the topology node this machine is; "" makes the machine stand
	// in for every node of the plan (one machine running a whole example).
	Node string `json:"node,omitempty"`
	// NodeTimeout is how long a `rung agent` may go without a heartbeat
	// before its node is down and its replicas are re-placed (default 10s).
	NodeTimeout Duration `json:"nodeTimeout,omitempty"`
	// MetricsListen, when set, also serves /metrics without a token on this
	// address (keep it private: a scraper's network); the API's /metrics
	// needs an operator token either way.
	MetricsListen string `json:"metricsListen,omitempty"`
	// Limits are the API's rate limits (per token, and failed
	// authentications per client address).
	Limits server.Limits `json:"limits,omitzero"`
	// OIDC lets in JWTs of an identity provider, verified offline against
	// its JWKS file, with claims naming the tenant and role.
	OIDC *auth.OIDCConfig `json:"oidc,omitempty"`
	// StoreTimeout bounds every store call (default 2s): past it the API
	// answers 503 with Retry-After.
	StoreTimeout Duration `json:"storeTimeout,omitempty"`
	// SecretKeyFile is the keyring Secrets are sealed with (default
	// DataDir/secrets.key, made at the first start, mode 0600). Several
	// rung up on one etcd need the same file.
	SecretKeyFile string `json:"secretKeyFile,omitempty"`
	// LeaderLease is how long the leader among several rung up on one etcd
	// keeps leading after it stops or is cut off: another takes over within
	// it (default 10s; whole seconds).
	LeaderLease Duration `json:"leaderLease,omitempty"`
	// AllowEmulatedVM lets the node agent run the vm tier under TCG when
	// KVM is missing: for tests only, never a security boundary (node
	// status, rung verify and the dashboard show it).
	AllowEmulatedVM bool `json:"allowEmulatedVM,omitempty"`
	// Runsc is the node agent's runsc for the sandbox tier
	// (plugins.Config.Runsc): one that passes the sandbox-network probe
	// lets sandboxes join tenant networks.
	Runsc string `json:"runsc,omitempty"`
	// Backend is "" (rung's own nodes and agents) or "kubernetes": a
	// cluster runs the replicas as pods (DESIGN §14).
	Backend string `json:"backend,omitempty"`
	// Kubeconfig is the cluster's kubeconfig for Backend kubernetes (""
	// uses the in-cluster config).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// KubeStorageClass is the StorageClass of volumes' claims on the
	// cluster ("" its default class; it must bind WaitForFirstConsumer).
	KubeStorageClass string `json:"kubeStorageClass,omitempty"`
	// KubeNodePorts is the cluster's node-port range, the apiserver's
	// --service-node-port-range (default 30000-32767).
	KubeNodePorts string `json:"kubeNodePorts,omitempty"`
}

// Duration is a time.Duration written as "10s" in config files.
type Duration time.Duration

// UnmarshalJSON reads "10s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"10s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadConfig reads a config file, JSON or YAML, rejecting unknown fields.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if j, err := yaml.YAMLToJSON(data); err == nil {
		data = j
	} else {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config %s: %w (fields: dataDir, listen, store, clientConfig, shutdownTimeout, agent, node, nodeTimeout, metricsListen, limits, oidc, storeTimeout, secretKeyFile, backend, kubeconfig)", path, err)
	}
	return c, nil
}

// withDefaults fills what c leaves out.
func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Store == "" {
		c.Store = "bolt"
	}
	if c.ClientConfig == "" {
		p, err := client.DefaultConfigPath()
		if err != nil {
			return c, err
		}
		c.ClientConfig = p
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(10 * time.Second)
	}
	return c, nil
}

// Info is what a started control plane tells its caller.
type Info struct {
	// URL is the API's base URL, http://HOST:PORT.
	URL string
	// TokenFile holds the admin (operator) token.
	TokenFile string
	// ClientConfigs are the client config files written.
	ClientConfigs []string
	// Store names the store in use.
	Store string
	// Agent is true when this process runs the node agent.
	Agent bool
	// MetricsURL is the metrics' own address (Config.MetricsListen), if any.
	MetricsURL string
}

// Up runs the control plane until ctx is done, then shuts down
// gracefully. ready is called once the API serves requests.
func Up(ctx context.Context, cfg Config, log *slog.Logger, ready func(Info)) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	defer tuneGC()() // gc.go
	st, storeName, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()

	var oidc *auth.OIDC
	if cfg.OIDC != nil {
		jwks, err := readSmall(cfg.OIDC.JWKSFile, 1<<20)
		if err != nil && cfg.OIDC.JWKSFile != "" {
			return fmt.Errorf("config: oidc.jwksFile: %w", err)
		}
		if oidc, err = auth.NewOIDC(*cfg.OIDC, jwks); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	tokenFile := filepath.Join(cfg.DataDir, AdminTokenFile)
	var (
		urlMu     sync.Mutex
		serverURL string
	)
	clientPaths := []string{filepath.Join(cfg.DataDir, ClientConfigFile)}
	if cfg.ClientConfig != "-" {
		clientPaths = append(clientPaths, cfg.ClientConfig)
	}
	// writeToken keeps the admin token where rung up keeps it: its token
	// file and the client configs it wrote.
	writeToken := func(_ context.Context, tok string) error {
		if err := client.WriteFileAtomic(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("admin token: %w", err)
		}
		urlMu.Lock()
		u := serverURL
		urlMu.Unlock()
		if u == "" {
			return nil
		}
		for _, p := range clientPaths {
			if err := client.WriteConfig(p, client.Config{Server: u, Token: tok}); err != nil {
				return err
			}
		}
		return nil
	}
	keyring, err := secret.Open(cmp.Or(cfg.SecretKeyFile, filepath.Join(cfg.DataDir, SecretKeyFile)))
	if err != nil {
		return fmt.Errorf("config: secretKeyFile: %w", err)
	}
	storeTimeout := cmp.Or(time.Duration(cfg.StoreTimeout), server.DefaultStoreTimeout)
	elector := electorFor(st, cfg)
	if elector != nil {
		defer elector.Close()
	}
	auditLog := audit.New(store.WithDeadline(st, storeTimeout))
	var (
		kubeEngine  *kube.Engine
		clusterTopo func() (v1.Topology, []string)
	)
	switch cfg.Backend {
	case "":
	case BackendKubernetes:
		if kubeEngine, clusterTopo, err = newKubeEngine(ctx, cfg, log, auditLog); err != nil {
			return err
		}
		cfg.Agent = false // the cluster's kubelets run the replicas
	default:
		return fmt.Errorf("config: backend %q: want \"\" (rung's own nodes) or %q", cfg.Backend, BackendKubernetes)
	}
	srv, err := server.New(server.Config{
		Store: st, Audit: auditLog, Registry: prometheus.NewRegistry(), Logger: log,
		NodeTimeout: time.Duration(cfg.NodeTimeout), Limits: cfg.Limits, OIDC: oidc, OnAdminToken: writeToken,
		StoreTimeout: storeTimeout, AdminTokenName: adminName(cfg.DataDir), Secrets: keyring,
		PipelineBatches: strings.HasPrefix(cfg.Store, "etcd://"), // commits are round trips there

		Elector: leaderElector(elector),
		Cluster: clusterTopo,
		// No workload may publish a node port rung listens on.
		ReservedPorts: listenPorts(cfg.Listen, cfg.MetricsListen),
	})
	if err != nil {
		return err
	}
	srv.SetReady(false)
	// The agent is ready before the API answers, so that "up" means up.
	var (
		nodeAgent *agent.Agent
		localNode *replica.Node
	)
	if cfg.Agent {
		if nodeAgent, localNode, err = newNodeAgent(ctx, cfg, srv, log); err != nil {
			return err
		}
	}
	token, err := adminToken(ctx, srv, tokenFile, writeToken)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	info := Info{URL: url, TokenFile: tokenFile, Store: storeName}
	urlMu.Lock()
	serverURL = url
	urlMu.Unlock()
	if elector != nil {
		elector.SetID(electorID(url))
	}
	for _, p := range clientPaths {
		if err := client.WriteConfig(p, client.Config{Server: url, Token: token}); err != nil {
			ln.Close()
			return err
		}
		info.ClientConfigs = append(info.ClientConfigs, p)
	}

	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var ms *http.Server
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metricsListen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		ms = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { _ = ms.Serve(mln) }()
		defer ms.Close()
		info.MetricsURL = "http://" + mln.Addr().String() + "/metrics"
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve: %w", err)
		}
	})
	wg.Go(func() {
		if err := srv.Run(runCtx); err != nil {
			errc <- err
		}
	})
	if nodeAgent != nil {
		wg.Go(func() { _ = nodeAgent.Run(runCtx, agentInterval) })
		wg.Go(func() { publishLogs(runCtx, srv, cfg.Node, nodeAgent, localNode, log) })
		info.Agent = true
	}
	if kubeEngine != nil {
		wg.Go(func() { runKube(runCtx, srv, kubeEngine, log) })
	}
	log.Info("rung up", "url", url, "store", storeName, "data", cfg.DataDir)
	if ready != nil {
		ready(info)
	}
	srv.SetReady(true) // only now: /readyz means everything above is done

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	srv.SetReady(false)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if serr := hs.Shutdown(sctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
	}
	stop()
	wg.Wait()
	log.Info("rung down")
	return err
}

// agentInterval is how often the node agent reconciles.
const agentInterval = 2 * time.Second

// publishLogs hands the tails of this machine's replicas' logs, their
// states and the node's admission decisions to the server every
// agentInterval, as a remote agent's heartbeat does.
func publishLogs(ctx context.Context, srv *server.Server, node string, a *agent.Agent, rn *replica.Node, log *slog.Logger) {
	t := time.NewTicker(agentInterval)
	defer t.Stop()
	var unsent []policy.Decision
	for {
		srv.PublishLogs(node, a.LogTails(ctx))
		if unsent = append(unsent, rn.TakeDecisions()...); len(unsent) > 1024 {
			unsent = unsent[len(unsent)-1024:] // the store has been failing for a long while
		}
		if len(unsent) > 0 {
			if err := srv.AuditNodeDecisions(ctx, cmp.Or(node, "local"), unsent); err != nil {
				log.Warn("audit node admission decisions", "err", err) // kept for the next round
			} else {
				unsent = nil
			}
		}
		if steps := a.NoisySteps(wire.MaxNoisySteps); len(steps) > 0 {
			if err := srv.AuditNoisy(ctx, node, steps); err != nil {
				log.Warn("audit noisy-neighbour steps", "err", err) // kept for the next round
			} else {
				a.AckNoisySteps(len(steps))
			}
		}
		if states, err := a.States(ctx); err == nil {
			srv.PublishLocalStates(states)
		}
		srv.PublishLocalDisk(a.VolumeDisk())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newNodeAgent builds this machine's agent: replicas live under DataDir, and
// the desired set is the server's current plan (for cfg.Node, or for every
// node). It also makes sure the project's busybox image is in the store.
func newNodeAgent(ctx context.Context, cfg Config, srv *server.Server, log *slog.Logger) (*agent.Agent, *replica.Node, error) {
	node, err := plugins.OpenNode(ctx, cfg.DataDir, replica.Options{Logger: log, VM: microvm.Options{AllowEmulated: cfg.AllowEmulatedVM}}, plugins.Config{Node: cfg.Node, Runsc: cfg.Runsc})
	if err != nil {
		return nil, nil, fmt.Errorf("node agent: %w", err)
	}
	if err := node.EnsureBusybox(ctx, "busybox:latest"); err != nil {
		log.Warn("node agent: no busybox image", "err", err)
	}
	// Plan only what this machine can run (no vm tier without a bootable
	// guest), for its node or for every node it stands in for.
	runtimes := node.Runtimes(ctx)
	srv.SetLocalRuntimes(cfg.Node, runtimes)
	srv.SetLocalEmulated(node.EmulatedTiers(ctx))
	srv.SetLocalExec(cfg.Node, node.Exec)
	srv.SetLocalLogs(node.Logs)
	log.Info("node agent runtimes", "node", cfg.Node, "runtimes", runtimes.String())
	src := agent.SourceFunc(func(ctx context.Context) ([]replica.Spec, error) { return srv.Desired(ctx, cfg.Node) })
	secrets := agent.SecretFunc(func(ctx context.Context, tenant, name string) (map[string]string, error) {
		return srv.SecretData(ctx, tenant, name, "node/"+cmp.Or(cfg.Node, "local"))
	})
	sweeper, err := plugins.VolumeSweeper(cfg.DataDir, log, func(ctx context.Context) ([]wire.VolumeDeletion, error) {
		return srv.VolumeDeletions(ctx, cfg.Node)
	})
	if err != nil {
		return nil, nil, err
	}
	opts := agent.Options{Logger: log.With("component", "agent"), Secrets: secrets, Volumes: sweeper}
	if nt, ok := node.Attacher("network").(*nodenet.Net); ok {
		// One machine: no peers to tell, so no underlay address.
		opts.Network = agent.NodeNetwork(nt, netip.Addr{})
		srv.PublishLocalNetwork(nt.Tiers())
	}
	a := agent.New(node, src, opts)
	// The disk before the first plan: a volume too large for it is refused
	// by the planner rather than bound and failed on the node.
	srv.PublishLocalDisk(a.VolumeDisk())
	return a, node, nil
}

// openStore opens the configured store; the only place naming backends.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, string, error) {
	switch {
	case cfg.Store == "bolt":
		st, err := bolt.Open(cfg.DataDir, bolt.Options{Logger: log})
		if err != nil {
			return nil, "", err
		}
		return st, "bolt " + st.Path(), nil
	case strings.HasPrefix(cfg.Store, "etcd://"):
		ec, err := etcd.ParseURL(cfg.Store)
		if err != nil {
			return nil, "", err
		}
		ec.Logger = log
		st, err := etcd.Open(ctx, ec)
		if err != nil {
			return nil, "", err
		}
		return st, cfg.Store, nil
	}
	return nil, "", fmt.Errorf("store %q: use bolt or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]", cfg.Store)
}

// DefaultLeaderLease is Config.LeaderLease's default.
const DefaultLeaderLease = 10 * time.Second

// electorFor is the leader election of several rung up on st: etcd's
// election on etcd; none (nil) on the embedded store, which one process
// holds (the server then always leads).
func electorFor(st store.Store, cfg Config) *etcd.Elector {
	es, ok := st.(*etcd.Store)
	if !ok {
		return nil
	}
	return es.Elector(electorID(""), cmp.Or(time.Duration(cfg.LeaderLease), DefaultLeaderLease))
}

// leaderElector keeps a nil *etcd.Elector a nil interface.
func leaderElector(e *etcd.Elector) leader.Elector {
	if e == nil {
		return nil
	}
	return e
}

// electorID names this control plane in the election: host, process and
// API address, so that `rung leader` says where the leader is.
func electorID(url string) string {
	host, _ := os.Hostname()
	return strings.TrimSpace(fmt.Sprintf("%s pid %d %s", host, os.Getpid(), url))
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// adminName names this rung up's admin token: its host and data
// directory, so that a new one replaces only its own earlier ones.
func adminName(dataDir string) string {
	host, _ := os.Hostname()
	n := "admin@" + host + ":" + dataDir
	if len(n) > 64 {
		n = n[:61] + "..."
	}
	return n
}

// adminToken returns the operator token kept in file, making a new one
// (and the file, mode 0600) when the file is missing or its token is no
// longer valid in the store; a new one revokes every earlier admin token.
func adminToken(ctx context.Context, srv *server.Server, file string, write func(context.Context, string) error) (string, error) {
	if data, err := os.ReadFile(file); err == nil {
		tok := strings.TrimSpace(string(data))
		ok, err := srv.TokenValid(ctx, tok)
		if err != nil {
			return "", fmt.Errorf("admin token: %w", err)
		}
		if ok {
			return tok, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok, _, err := srv.IssueAdminToken(ctx, auth.Principal{}, adminName(filepath.Dir(file)))
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := write(ctx, tok); err != nil {
		return "", err
	}
	return tok, nil
}

// listenPorts are the ports of the given listen addresses (0 and
// unparsable ones left out).
func listenPorts(addrs ...string) []int {
	var out []int
	for _, a := range addrs {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if p, err := strconv.Atoi(port); err == nil && p > 0 {
			out = append(out, p)
		}
	}
	return out
}
