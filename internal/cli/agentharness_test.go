package cli

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/app"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
)

// agentHarness is a control plane and the `rung agent`s of a test, all
// in this process under runc: what the multi-node tests share.
type agentHarness struct {
	t    *testing.T
	dir  string
	log  *slog.Logger
	info app.Info
	op   *client.Client

	mu     sync.Mutex
	tokens map[string]string
	agents map[string]*testAgent
	// nodes is every agent ever started, to clean up after.
	nodes map[string]agentConfig
}

type testAgent struct {
	stop context.CancelFunc
	done chan error
}

// newAgentHarness runs `rung up` (no agent of its own) with nodeTimeout
// and applies manifest as its operator. When the test ends it stops the
// agents, removes whatever they left (a failure before they removed it)
// and then the control plane. It skips without root, runc or busybox.
func newAgentHarness(t *testing.T, nodeTimeout time.Duration, manifest string) *agentHarness {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	h := &agentHarness{
		t:      t,
		dir:    drivertest.SearchableTempDir(t),
		log:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		tokens: map[string]string{},
		agents: map[string]*testAgent{},
		nodes:  map[string]agentConfig{},
	}
	h.info, h.op = upControlPlane(t, h.dir, h.log, nodeTimeout, manifest)
	// Registered after the control plane's: runs before it.
	t.Cleanup(func() {
		h.mu.Lock()
		var running []string
		for n := range h.agents {
			running = append(running, n)
		}
		h.mu.Unlock()
		for _, n := range running {
			h.Stop(n)
		}
		h.removeLeftovers()
	})
	return h
}

// Start runs cfg's agent against the control plane, with its node's
// token; cfg.DataDir defaults to dir/NODE.
func (h *agentHarness) Start(cfg agentConfig) { h.StartAt(h.info.URL, cfg) }

// StartAt is Start with the agent reaching the control plane at url.
func (h *agentHarness) StartAt(url string, cfg agentConfig) {
	t := h.t
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(h.dir, cfg.Node)
	}
	h.mu.Lock()
	tok := h.tokens[cfg.Node]
	h.mu.Unlock()
	if tok == "" {
		tr, err := h.op.CreateNodeToken(t.Context(), cfg.Node, "test agent")
		if err != nil {
			t.Fatal(err)
		}
		tok = tr.Token
	}
	nc, err := client.New(url, tok)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(context.Background())
	a := &testAgent{stop: stop, done: make(chan error, 1)}
	go func() { a.done <- runAgent(actx, nc, cfg, h.log) }()
	h.mu.Lock()
	h.tokens[cfg.Node] = tok
	h.agents[cfg.Node] = a
	h.nodes[cfg.Node] = cfg
	h.mu.Unlock()
}

// Stop stops node's agent, as its machine dying would, and leaves its
// replicas behind.
func (h *agentHarness) Stop(node string) {
	h.mu.Lock()
	a := h.agents[node]
	delete(h.agents, node)
	h.mu.Unlock()
	if a == nil {
		return
	}
	a.stop()
	if err := <-a.done; err != nil {
		h.t.Errorf("agent %s: %v", node, err)
	}
}

// removeLeftovers removes every replica on the started nodes, with their
// plugins (a network's links go with them), and the nodes' emptied
// cgroup parents (/rung/NODE/TENANT): no container outlives the test.
func (h *agentHarness) removeLeftovers() {
	t := h.t
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for node, cfg := range h.nodes {
		n, err := plugins.OpenNode(rctx, cfg.DataDir, replica.Options{CgroupParent: "/rung/" + node}, plugins.Config{Node: node, NetNS: cfg.NetNS})
		if err != nil {
			t.Errorf("open %s to clean up: %v", node, err)
			continue
		}
		recs, _ := n.Records()
		for _, r := range recs {
			if err := n.Remove(rctx, r.Spec.ID); err != nil {
				t.Errorf("cleanup %s on %s: %v", r.Spec.ID, node, err)
			}
		}
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/rung/" + node)
		for _, d := range dirs {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if e.IsDir() {
					_ = os.Remove(filepath.Join(d, e.Name()))
				}
			}
			_ = os.Remove(d)
		}
	}
}

// workloadRef names a workload for deleteWhenDone.
type workloadRef struct{ tenant, name string }

// deleteWhenDone deletes the workloads when the test ends, before the
// agents stop (register it after the harness), and waits until the
// agents removed their replicas' links from each namespace.
func (h *agentHarness) deleteWhenDone(workloads []workloadRef, namespaces ...string) {
	t := h.t
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, w := range workloads {
			_, _ = h.op.Delete(dctx, client.Ref{Kind: v1.KindWorkload, Tenant: w.tenant, Name: w.name})
		}
		for _, ns := range namespaces {
			for {
				out, _ := exec.Command("ip", "-n", ns, "-o", "link").CombinedOutput()
				if !strings.Contains(string(out), " rv") {
					break
				}
				if dctx.Err() != nil {
					t.Errorf("links left in %s two minutes after the workloads went:\n%s", ns, out)
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
	})
}

// upControlPlane runs `rung up` (no agent of its own) in dir/cp with
// nodeTimeout until the test ends, and applies manifest as its operator.
func upControlPlane(t *testing.T, dir string, log *slog.Logger, nodeTimeout time.Duration, manifest string) (app.Info, *client.Client) {
	t.Helper()
	cpCtx, cpStop := context.WithCancel(context.Background())
	infoc := make(chan app.Info, 1)
	cpDone := make(chan error, 1)
	go func() {
		cpDone <- app.Up(cpCtx, app.Config{
			DataDir: filepath.Join(dir, "cp"), Listen: "127.0.0.1:0", ClientConfig: "-",
			NodeTimeout: app.Duration(nodeTimeout),
		}, log, func(i app.Info) { infoc <- i })
	}()
	t.Cleanup(func() {
		cpStop()
		if err := <-cpDone; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	var info app.Info
	select {
	case info = <-infoc:
	case err := <-cpDone:
		t.Fatalf("control plane: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("control plane not up after 60s")
	}
	tok, err := os.ReadFile(info.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	op, err := client.New(info.URL, strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	set, err := v1.Decode("manifest.yaml", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.ApplySet(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	return info, op
}
