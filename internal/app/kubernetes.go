package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/audit"
	kube "rung.dev/rung/internal/engine/kubernetes"
	"rung.dev/rung/internal/server"
)

// BackendKubernetes is Config.Backend for a Kubernetes cluster as the
// engine (DESIGN §14): the cluster's nodes are the topology and replicas
// run as pods.
const BackendKubernetes = "kubernetes"

// newKubeEngine connects to the cluster (checking rung's rights there) and
// returns the engine and the server's topology hook.
func newKubeEngine(ctx context.Context, cfg Config, log *slog.Logger, al *audit.Log) (*kube.Engine, func() (v1.Topology, []string), error) {
	if cfg.KubeNodePorts != "" {
		if _, _, err := v1.ParsePortRange(cfg.KubeNodePorts); err != nil {
			return nil, nil, fmt.Errorf("kube node ports %q: %w (fix: the apiserver's --service-node-port-range, e.g. 30000-32767)", cfg.KubeNodePorts, err)
		}
	}
	e, err := kube.New(ctx, kube.Config{
		Kubeconfig: cfg.Kubeconfig,
		Objects:    kube.Options{StorageClass: cfg.KubeStorageClass, NodePorts: cfg.KubeNodePorts},
		Logger:     log.With("component", "kubernetes"),
		Audit: func(ctx context.Context, r audit.Record) error {
			_, _, err := al.Append(ctx, r)
			return err
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return e, func() (v1.Topology, []string) {
		c := e.Cluster()
		return c.Topology, c.Down
	}, nil
}

// runKube applies the server's current plan to the cluster whenever the
// plan or the cluster changes, and hands the pods' states back as the
// replicas' status.
func runKube(ctx context.Context, srv *server.Server, e *kube.Engine, log *slog.Logger) {
	t := time.NewTicker(agentInterval)
	defer t.Stop()
	for {
		if set, res, err := srv.Current(ctx); err != nil {
			log.Warn("kubernetes: plan", "err", err)
		} else if _, err := e.Apply(ctx, set, res); err != nil {
			log.Warn("kubernetes: apply", "err", err) // tried again next round
		}
		srv.PublishLocalStates(e.States())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.Changed():
		}
	}
}
