package cli

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/app"
)

func newUpCmd() *cobra.Command {
	var (
		configFile  string
		cfg         app.Config
		verbose     bool
		nodeTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up [--data-dir DIR] [--listen ADDR] [--config FILE]",
		Short: "Start the control plane on this machine: API, scheduler and embedded store",
		Long: `Starts rung's control plane in this process: the HTTP JSON API (/v1/...),
the scheduler, and an embedded store (bbolt) in the data directory, or a
real etcd cluster with --store etcd://HOST:PORT,...

It prints the API address and the admin token's path, and writes a client
config (address and token, mode 0600) to DATA-DIR/client.json and
$RUNG_CONFIG or ~/.config/rung/config.json, which apply, get, delete and
describe read. It runs until interrupted (SIGINT, SIGTERM), then shuts
down gracefully.

A config file (JSON or YAML) may set dataDir, listen, store, clientConfig
and shutdownTimeout; flags override it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run := app.Config{}
			if configFile != "" {
				c, err := app.LoadConfig(configFile)
				if err != nil {
					return withCode(ExitInvalid, err)
				}
				run = c
			}
			fl := cmd.Flags()
			if fl.Changed("data-dir") {
				run.DataDir = cfg.DataDir
			}
			if fl.Changed("listen") {
				run.Listen = cfg.Listen
			}
			if fl.Changed("store") {
				run.Store = cfg.Store
			}
			if fl.Changed("client-config") {
				run.ClientConfig = cfg.ClientConfig
			}
			if fl.Changed("agent") || configFile == "" {
				run.Agent = cfg.Agent
			}
			if fl.Changed("node") {
				run.Node = cfg.Node
			}
			if fl.Changed(allowEmulatedVMFlag) {
				run.AllowEmulatedVM = cfg.AllowEmulatedVM
			}
			if fl.Changed(runscFlag) || run.Runsc == "" {
				run.Runsc = cfg.Runsc
			}
			if fl.Changed("backend") {
				run.Backend = cfg.Backend
			}
			if fl.Changed("kubeconfig") {
				run.Kubeconfig = cfg.Kubeconfig
			}
			if fl.Changed("kube-storage-class") {
				run.KubeStorageClass = cfg.KubeStorageClass
			}
			if fl.Changed("kube-node-ports") {
				run.KubeNodePorts = cfg.KubeNodePorts
			}
			if fl.Changed("node-timeout") {
				run.NodeTimeout = app.Duration(nodeTimeout)
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			out := cmd.OutOrStdout()
			return app.Up(cmd.Context(), run, log, func(info app.Info) {
				fmt.Fprintf(out, "rung is up at %s\n", info.URL)
				fmt.Fprintf(out, "store:         %s\n", info.Store)
				fmt.Fprintf(out, "admin token:   %s\n", info.TokenFile)
				fmt.Fprintf(out, "client config: %s\n", strings.Join(info.ClientConfigs, ", "))
				fmt.Fprintf(out, "dashboard:     %s/ (sign in with the admin token)\n", info.URL)
				if info.Agent {
					fmt.Fprintf(out, "node agent:    running the planned replicas on this machine\n")
				}
				fmt.Fprintf(out, "try: rung apply -f examples/university && rung get workloads\n")
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config", "", "config file (JSON or YAML)")
	fl.StringVar(&cfg.DataDir, "data-dir", app.DefaultDataDir, "data directory: store, admin token, client config")
	fl.StringVar(&cfg.Listen, "listen", app.DefaultListen, "API listen address; port 0 picks a free one")
	fl.StringVar(&cfg.Store, "store", "bolt", "store: bolt (embedded, in the data directory) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]")
	fl.StringVar(&cfg.ClientConfig, "client-config", "", "also write the client config here (default $RUNG_CONFIG or ~/.config/rung/config.json; - for nowhere)")
	fl.BoolVarP(&verbose, "verbose", "v", false, "log every failed request")
	fl.BoolVar(&cfg.Agent, "agent", true, "run the node agent: start the planned replicas on this machine (runc, runsc)")
	fl.StringVar(&cfg.Node, "node", "", "the topology node this machine is (default: stand in for every node)")
	fl.BoolVar(&cfg.AllowEmulatedVM, allowEmulatedVMFlag, false, allowEmulatedVMHelp)
	fl.StringVar(&cfg.Runsc, runscFlag, defaultRunsc(), runscHelp)
	fl.StringVar(&cfg.Backend, "backend", "", "where replicas run: \"\" (rung's own nodes and agents) or kubernetes (a cluster's nodes are the topology; replicas run as pods)")
	fl.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster for --backend kubernetes (default: the in-cluster config)")
	fl.StringVar(&cfg.KubeStorageClass, "kube-storage-class", "", "StorageClass of volumes' claims for --backend kubernetes (default: the cluster's default class; it must bind WaitForFirstConsumer)")
	fl.StringVar(&cfg.KubeNodePorts, "kube-node-ports", "", "the cluster's node-port range for --backend kubernetes (default 30000-32767)")
	fl.DurationVar(&nodeTimeout, "node-timeout", 10*time.Second, "a node agent silent this long is down; its replicas are re-placed")
	return cmd
}
