package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/server/wire"
)

// agentConfig is how one `rung agent` runs.
type agentConfig struct {
	// Node is the topology node this agent is.
	Node string
	// DataDir holds this node's images, bundles and runtime state; agents
	// sharing a machine each need their own.
	DataDir string
	// Interval is how often it heartbeats and reconciles.
	Interval time.Duration
	// AllowEmulatedVM runs the vm tier under TCG without KVM (tests only).
	AllowEmulatedVM bool
	// Underlay is the node's address other nodes route its replicas
	// through; empty: the address it reaches the control plane from.
	Underlay string
	// NetNS is the node's network namespace for tenant networks (tests
	// run several "hosts" in namespaces); empty: the process's own.
	NetNS string
	// Runsc is the sandbox tier's runsc (--runsc; plugins.Config.Runsc).
	Runsc string
}

// defaultAgentInterval is how often `rung agent` heartbeats and reconciles:
// well inside the control plane's default 10s node timeout.
const defaultAgentInterval = 2 * time.Second

// runAgent is `rung agent`: it opens the node's replicas in cfg.DataDir
// (their cgroups under /rung/NODE, so several agents on one machine never
// share one) and heartbeats and reconciles against api until ctx ends.
func runAgent(ctx context.Context, api agent.API, cfg agentConfig, log *slog.Logger) error {
	if cfg.Node == "" {
		return withCode(ExitInvalid, errors.New("--node: name the topology node this agent is"))
	}
	if cfg.DataDir == "" {
		return withCode(ExitInvalid, errors.New("--data-dir: each agent needs its own data directory"))
	}
	if cfg.Interval <= 0 {
		cfg.Interval = defaultAgentInterval
	}
	log = log.With("node", cfg.Node)
	node, err := plugins.OpenNode(ctx, cfg.DataDir, replica.Options{Logger: log, CgroupParent: "/rung/" + cfg.Node, VM: microvm.Options{AllowEmulated: cfg.AllowEmulatedVM}}, plugins.Config{Node: cfg.Node, NetNS: cfg.NetNS, Runsc: cfg.Runsc})
	if err != nil {
		return fmt.Errorf("agent %s: %w", cfg.Node, err)
	}
	if err := node.EnsureBusybox(ctx, "busybox:latest"); err != nil {
		log.Warn("agent: no busybox image", "err", err)
	}
	opts := agent.Options{Logger: log.With("component", "agent")}
	// Deleted volumes are wiped on the next reconcile (*client.Client
	// asks the control plane for them).
	if va, ok := api.(interface {
		NodeVolumeDeletions(ctx context.Context, node string) ([]wire.VolumeDeletion, error)
	}); ok {
		sweeper, err := plugins.VolumeSweeper(cfg.DataDir, log, func(ctx context.Context) ([]wire.VolumeDeletion, error) {
			return va.NodeVolumeDeletions(ctx, cfg.Node)
		})
		if err != nil {
			return err
		}
		opts.Volumes = sweeper
	}
	if nt, ok := node.Attacher("network").(*nodenet.Net); ok {
		under, err := underlay(cfg.Underlay, api)
		if err != nil {
			return withCode(ExitInvalid, fmt.Errorf("--underlay: %w", err))
		}
		opts.Network = agent.NodeNetwork(nt, under)
	}
	r, err := agent.NewRemote(cfg.Node, api, node, node.Runtimes(ctx), opts)
	if err != nil {
		return err
	}
	log.Info("rung agent", "data", node.Dir(), "interval", cfg.Interval)
	if err := r.Run(ctx, cfg.Interval); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func newAgentCmd() *cobra.Command {
	var (
		cf      clientFlags
		cfg     agentConfig
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "agent --server URL --token T --node NAME --data-dir DIR",
		Short: "Run one node's agent against a control plane",
		Long: `Runs the replicas the control plane places on one topology node: every
--interval it heartbeats (the tiers it can run, its replicas' states),
fetches the node's desired replicas and starts, restarts or removes
containers to match. A node that stops heartbeating for the control
plane's --node-timeout is marked down and its replicas are re-placed.

The token is a node token (rung token create --role node --node NAME): it
may only heartbeat as that node and read its replicas. Several agents may
share a machine, each with its own --node and --data-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			return runAgent(cmd.Context(), c, cfg, log)
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&cfg.Node, "node", "", "the topology node this agent is")
	fl.StringVar(&cfg.DataDir, "data-dir", "", "this node's data directory (images, bundles, runtime state)")
	fl.DurationVar(&cfg.Interval, "interval", defaultAgentInterval, "how often to heartbeat and reconcile")
	fl.StringVar(&cfg.Underlay, "underlay", "", "this node's IPv4 address other nodes reach its replicas through (default: the one it reaches the server from)")
	fl.BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	fl.BoolVar(&cfg.AllowEmulatedVM, allowEmulatedVMFlag, false, allowEmulatedVMHelp)
	fl.StringVar(&cfg.Runsc, runscFlag, defaultRunsc(), runscHelp)
	_ = cmd.MarkFlagRequired("node")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

var _ agent.API = (*client.Client)(nil)

// underlay is the node's own address for tenant networks: flag, else the
// local address of a route to the control plane (no packet is sent).
func underlay(flag string, api agent.API) (netip.Addr, error) {
	if flag != "" {
		a, err := netip.ParseAddr(flag)
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", flag)
		}
		return a, nil
	}
	srv, ok := api.(interface{ Server() string })
	if !ok {
		return netip.Addr{}, errors.New("no control plane address to find it from; set it")
	}
	u, err := url.Parse(srv.Server())
	if err != nil {
		return netip.Addr{}, err
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	c, err := net.Dial("udp4", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("route to %s: %w", u.Host, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
