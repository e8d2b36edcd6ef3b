// Package plugins is the one place that lists what plugs into a node: the
// per-replica resources (replica.Attacher: networks, volumes…) every
// process that runs replicas gets (rung up's own agent, rung agent, rung
// demo, rung run). A new kind is added here, never as a branch in the
// agent or the node.
package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/volume"
)

// Config is what the plugins of one node may need.
type Config struct {
	// DataDir is the node's data directory; plugins keep their state
	// under DataDir/NAME.
	DataDir string
	// Node names the node ("" for rung run).
	Node   string
	Logger *slog.Logger
	// NetNS is the node's network namespace for tenant networks (a path;
	// empty: the process's own).
	NetNS string
	// Runsc is the operator's runsc (--runsc PATH on rung agent, up and
	// demo; DefaultRunsc): the sandbox driver runs it, and when it passes
	// runtime.ProbeSandboxNetwork at node open, sandboxes run gVisor's own
	// network stack and join tenant networks (nodenet reports the sandbox
	// tier). Empty: the runsc in PATH, with --network=none, and sandbox
	// replicas with a network are refused (Debian 12's runsc can't).
	Runsc string
	// SandboxNetworks is set by OpenNode from the probe.
	SandboxNetworks bool
}

// Attachers builds the node's attachers, in the order they attach (and
// detach in reverse). Secrets are built into the node.
func Attachers(ctx context.Context, cfg Config) ([]replica.Attacher, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var out []replica.Attacher
	// Tenant networks (DESIGN §9): inert for replicas without a network.
	nt, err := nodenet.Open(ctx, nodenet.Config{Dir: filepath.Join(cfg.DataDir, "network"), Scope: nodenet.ScopeFor(cfg.DataDir), NetNS: cfg.NetNS, Logger: cfg.Logger, SandboxNetworks: cfg.SandboxNetworks})
	if err != nil {
		// A kernel without nftables can still run replicas that have no
		// network; one that asks for a network is refused (fail closed).
		cfg.Logger.Warn("tenant networks unavailable: replicas with a network will be refused", "err", err)
		out = append(out, noNetworks{err: err})
	} else {
		out = append(out, nt)
	}
	// Volumes: DataDir/volume (internal/volume).
	vols, err := volume.Open(volumeDir(cfg.DataDir), cfg.Logger)
	if err != nil {
		return nil, err
	}
	out = append(out, volume.NewAttacher(vols))
	return out, nil
}

// OpenNode opens the node at dir with its plugins: how every process that
// runs replicas opens its node.
func OpenNode(ctx context.Context, dir string, opts replica.Options, cfg Config) (*replica.Node, error) {
	cfg.DataDir = dir
	if cfg.Logger == nil {
		cfg.Logger = opts.Logger
	}
	if cfg.Runsc != "" {
		opts.RunscBinary = cfg.Runsc
		cfg.SandboxNetworks = probeSandboxNetwork(ctx, dir, opts, cfg) == nil
		if cfg.SandboxNetworks {
			opts.RunscNetwork = "sandbox"
		}
	}
	ats, err := Attachers(ctx, cfg)
	if err != nil {
		return nil, err
	}
	opts.Attachers = append(opts.Attachers, ats...)
	return replica.Open(ctx, dir, opts)
}

// probeSandboxNetwork runs runtime.ProbeSandboxNetwork for the node's
// runsc in DIR/runtimes/runsc-netprobe (removed after).
func probeSandboxNetwork(ctx context.Context, dir string, opts replica.Options, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The directories as replica.Open leaves them (0711): the probe's
	// bundle is opened from inside its user namespace, and a data
	// directory `rung up` just made is 0700.
	abs, err := replica.PrepareDir(dir)
	if err == nil {
		err = runtime.ProbeSandboxNetwork(ctx, runtime.Config{Binary: cfg.Runsc, Dir: filepath.Join(abs, "runtimes", "runsc-netprobe"), Platform: opts.RunscPlatform, Logger: log})
	}
	if err != nil {
		log.Warn("sandbox networks off: sandbox replicas with a network will be refused", "runsc", cfg.Runsc, "err", err)
		return err
	}
	log.Info("sandbox networks on: runsc runs gVisor's network stack (--network=sandbox)", "runsc", cfg.Runsc)
	return nil
}

// DefaultRunsc is the runsc beside the running executable (bin/runsc,
// which `make runsc` builds next to bin/rung), or "" when there is none:
// the default of --runsc.
func DefaultRunsc() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "runsc")
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return ""
	}
	return p
}

func volumeDir(dataDir string) string { return filepath.Join(dataDir, "volume") }

// VolumeSweeper is the sweeper of the volumes of the node at dataDir: it
// wipes what deleted reports (the control plane's tombstones), on every
// reconcile of the node's agent.
func VolumeSweeper(dataDir string, log *slog.Logger, deleted func(ctx context.Context) ([]wire.VolumeDeletion, error)) (Volumes, error) {
	m, err := volume.Open(volumeDir(dataDir), log)
	if err != nil {
		return Volumes{}, err
	}
	return Volumes{volume.Sweeper{M: m, Deleted: func(ctx context.Context) ([]volume.Ref, error) {
		ds, err := deleted(ctx)
		if err != nil {
			return nil, err
		}
		var refs []volume.Ref
		for _, d := range ds {
			refs = append(refs, volume.Ref{Tenant: d.Tenant, Name: d.Name, UID: d.UID})
			for _, inst := range d.Instances {
				if inst != d.Name {
					refs = append(refs, volume.Ref{Tenant: d.Tenant, Name: inst, UID: d.UID})
				}
			}
		}
		return refs, nil
	}}}, nil
}

// Volumes is the sweeper of a node's volumes that also reports the room
// for them in its heartbeat (agent.DiskReporter).
type Volumes struct{ volume.Sweeper }

// VolumeDisk measures the node's room for volumes.
func (v Volumes) VolumeDisk() (*wire.VolumeDisk, error) {
	d, err := v.Disk()
	if err != nil {
		return nil, err
	}
	return &wire.VolumeDisk{Capacity: d.Capacity, Free: d.Free, Held: d.Held}, nil
}

// noNetworks stands in for the network plugin on a node that can't open
// it: replicas without a network run, one with a network is refused with
// the reason.
type noNetworks struct{ err error }

func (noNetworks) Name() string { return "network" }

func (n noNetworks) Attach(_ context.Context, a *replica.Attachment) error {
	if a.Spec.Network == nil {
		return nil
	}
	return fmt.Errorf("this node can't make tenant networks: %w", n.err)
}

func (noNetworks) Detach(context.Context, string, *replica.Spec) error { return nil }
