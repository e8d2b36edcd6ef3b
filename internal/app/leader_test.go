package app_test

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/app"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store/etcd/etcdtest"
)

// leaderDirEnv and leaderStoreEnv make TestLeaderChild run `rung up` on
// that data directory and store until it is killed.
const (
	leaderDirEnv   = "RUNG_TEST_LEADER_DIR"
	leaderStoreEnv = "RUNG_TEST_LEADER_STORE"
)

// testLeaderLease is the children's leader lease: short for a quick
// take-over, long enough that a busy machine's keep-alives keep it.
const testLeaderLease = 5 * time.Second

// TestLeaderChild is a child process of TestLeaderElection, not a test.
func TestLeaderChild(t *testing.T) {
	dir := os.Getenv(leaderDirEnv)
	if dir == "" {
		t.Skip("child of TestLeaderElection only")
	}
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", ClientConfig: "-", Store: os.Getenv(leaderStoreEnv), LeaderLease: app.Duration(testLeaderLease)}
	err := app.Up(context.Background(), cfg, nil, nil)
	t.Fatalf("up returned: %v", err)
}

// TestLeaderElection is DESIGN §11 on a real etcd: two `rung up` on one
// etcd elect one leader (both say which); a workload applied through the
// follower is planned by the leader, and the follower serves that stored
// plan. The leader is killed with SIGKILL (no resignation): the other takes
// over once the lease expires, keeps every replica where it was (none is
// placed twice), and schedules from then on.
func TestLeaderElection(t *testing.T) {
	if _, err := etcdtest.Binary(); err != nil {
		t.Skip(err)
	}
	cluster := etcdtest.Start(t, 1)
	storeURL := "etcd://" + strings.TrimPrefix(cluster.Endpoints()[0], "http://") + "/leader-test"
	base := t.TempDir()
	type cp struct {
		cmd *exec.Cmd
		c   *client.Client
	}
	start := func(name string) cp {
		dir := filepath.Join(base, name)
		cmd := exec.Command(os.Args[0], "-test.run=^TestLeaderChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), leaderDirEnv+"="+dir, leaderStoreEnv+"="+storeURL)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		c, err := waitReady(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		return cp{cmd, c}
	}
	a, b := start("a"), start("b")
	ctx := t.Context()

	// One leads; both name it.
	var lead, follow cp
	deadline := time.Now().Add(60 * time.Second)
	for {
		la, errA := a.c.Leader(ctx)
		lb, errB := b.c.Leader(ctx)
		if errA == nil && errB == nil && la.ID != "" && la.ID == lb.ID && la.Answering != lb.Answering {
			lead, follow = a, b
			if lb.Answering {
				lead, follow = b, a
			}
			t.Logf("leader %s (term %d)", la.ID, la.Term)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single leader after 60s: a %+v %v, b %+v %v", la, errA, lb, errB)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m, err := lead.c.Metrics(ctx); err != nil || !strings.Contains(string(m), "\nrung_leader 1\n") {
		t.Errorf("the leader's metrics: rung_leader 1 missing (%v)", err)
	}
	if m, err := follow.c.Metrics(ctx); err != nil || !strings.Contains(string(m), "\nrung_leader 0\n") {
		t.Errorf("the follower's metrics: rung_leader 0 missing (%v)", err)
	}
	// A follower grants no node lease.
	if err := follow.c.Heartbeat(ctx, "h1", wire.Heartbeat{}); err == nil || !strings.Contains(err.Error(), "does not lead") {
		t.Errorf("heartbeat to the follower: %v, want refused (it does not lead)", err)
	}

	// Applied through the follower, planned by the leader, served by both.
	for _, o := range []any{topologyObj(), tenantObj(), workloadObj("web", 3)} {
		if _, err := follow.c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	wantAll := func(c *client.Client, n int) map[string]string {
		t.Helper()
		var res *scheduler.Result
		var err error
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if res, err = c.Plan(ctx); err == nil && len(res.Placements) == n && len(res.Unplaced) == 0 {
				return placedOnce(t, res)
			}
		}
		t.Fatalf("plan: %+v, %v; want %d placed", res, err, n)
		return nil
	}
	before := wantAll(follow.c, 3)
	if got := wantAll(lead.c, 3); !maps.Equal(got, before) {
		t.Fatalf("leader's plan %v, follower's %v", got, before)
	}

	// kill -9 the leader: no resignation; its lease must expire.
	killed := time.Now()
	if err := lead.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = lead.cmd.Process.Wait()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		l, err := follow.c.Leader(ctx)
		if err == nil && l.Answering {
			t.Logf("took over %v after the kill (lease %v)", time.Since(killed).Round(100*time.Millisecond), testLeaderLease)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the survivor does not lead 60s after the leader's kill: %+v, %v", l, err)
		}
	}
	if after := wantAll(follow.c, 3); !maps.Equal(after, before) {
		t.Errorf("replicas moved at the take-over: before %v, after %v", before, after)
	}
	// The new leader schedules: a new workload is placed.
	if _, err := follow.c.Apply(ctx, workloadObj("api", 2)); err != nil {
		t.Fatal(err)
	}
	if after := wantAll(follow.c, 5); after["acme/web[0]"] != before["acme/web[0]"] {
		t.Errorf("web moved when api was placed: %v", after)
	}
}

// placedOnce maps "workload[replica]" to its node, failing on a replica
// placed twice.
func placedOnce(t *testing.T, res *scheduler.Result) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range res.Placements {
		k := p.Workload + "[" + strconv.Itoa(p.Replica) + "]"
		if n, dup := m[k]; dup {
			t.Fatalf("%s placed twice: on %s and %s", k, n, p.Node)
		}
		m[k] = p.Node
	}
	return m
}
