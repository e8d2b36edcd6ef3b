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
	"path/filepath"

	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/replica"
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
}

// Attachers builds the node's attachers, in the order they attach (and
// detach in reverse). Secrets are built into the node.
func Attachers(ctx context.Context, cfg Config) ([]replica.Attacher, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var out []replica.Attacher
	// Tenant networks (DESIGN §9): inert for replicas without a network.
	nt, err := nodenet.Open(ctx, nodenet.Config{Dir: filepath.Join(cfg.DataDir, "network"), Scope: nodenet.ScopeFor(cfg.DataDir), NetNS: cfg.NetNS, Logger: cfg.Logger})
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
	ats, err := Attachers(ctx, cfg)
	if err != nil {
		return nil, err
	}
	opts.Attachers = append(opts.Attachers, ats...)
	return replica.Open(ctx, dir, opts)
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
