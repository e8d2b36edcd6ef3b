package agent_test

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/noisy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// spin is a shell command keeping n CPUs busy.
func spin(n int) string {
	return strings.Repeat("while :; do :; done & ", n-1) + "while :; do :; done"
}

// TestNoisyLadderOnRealRunc runs a bursting CPU hog beside a steady
// replica that wants its full request and a quiet burstable one, on real
// runc replicas, and drives the monitor until the hog is throttled (long
// deadline: on a loaded machine nothing is assumed of a short window).
// It checks the mechanism, not latencies: the throttle and its report
// are steps with their figures, the hog's CFS quota is its request in the
// cgroup file and the kernel throttles it, and the replicas within their
// requests are never touched.
func TestNoisyLadderOnRealRunc(t *testing.T) {
	n := realNode(t)
	ctx := t.Context()
	cpus := goruntime.NumCPU()
	pol := &noisy.Policy{Threshold: 0.05, Actions: []noisy.Action{noisy.Throttle, noisy.Report, noisy.Move},
		Interval: 500 * time.Millisecond, Hold: 2, Calm: 1 << 20}
	mk := func(id, tenant, cmd string, req, lim int64) replica.Spec {
		s := replica.Spec{ID: id, Tenant: tenant, Tier: tenancy.Container, Image: "busybox:latest",
			Args: []string{"sh", "-c", cmd}, Resources: topology.Resources{MilliCPU: req, Memory: 32 << 20, PIDs: 64}, Noisy: pol}
		if lim > req {
			s.Limits = &topology.Resources{MilliCPU: lim, Memory: 64 << 20}
		}
		return s
	}
	// The hog may burst to every CPU; steady wants one CPU, all of its
	// request, so with the hog bursting the node has more runnable tasks
	// than CPUs (pressure); quiet is burstable but sleeps.
	desired := []replica.Spec{
		mk("batch-hog-0", "batch", spin(cpus), 100, int64(cpus)*1000),
		mk("shop-steady-0", "shop", spin(1), 1000, 0),
		mk("shop-quiet-0", "shop", "while :; do sleep 1; done", 200, 1000),
	}
	src := agent.SourceFunc(func(context.Context) ([]replica.Spec, error) { return desired, nil })
	a := agent.New(n, src, agent.Options{})
	t.Cleanup(func() {
		desired = nil
		_, _ = agent.New(n, src, agent.Options{}).Reconcile(context.Background())
	})
	deadline := time.Now().Add(120 * time.Second)
	for {
		r, err := a.Reconcile(ctx)
		if err != nil || len(r.Failed) > 0 {
			t.Fatalf("reconcile: %v %v", err, r.Failed)
		}
		up := 0
		for _, s := range desired {
			if st, err := n.State(ctx, s.ID); err == nil && st.Status == runtime.Running {
				up++
			}
		}
		if up == len(desired) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not running after 120s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	quota := func(s replica.Spec) int64 {
		t.Helper()
		q, err := replica.NewCgroup(n.CgroupPath(s.Tenant, s.ID)).CPUQuota()
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	hog, steady, quiet := desired[0], desired[1], desired[2]
	if q := quota(hog); q != int64(cpus)*1000 {
		t.Fatalf("hog's quota before the ladder = %dm, want its limit %dm", q, cpus*1000)
	}
	// Burstable: the request is its guaranteed share (cpu.shares, memory
	// soft limit), the limit its cap (cgroup v1 files; v2 maps them).
	if _, err := os.Stat("/sys/fs/cgroup/cpu"); err == nil {
		for file, want := range map[string]string{
			"/sys/fs/cgroup/cpu" + n.CgroupPath(hog.Tenant, hog.ID) + "/cpu.shares":                     "102",
			"/sys/fs/cgroup/memory" + n.CgroupPath(hog.Tenant, hog.ID) + "/memory.soft_limit_in_bytes":  strconv.Itoa(32 << 20),
			"/sys/fs/cgroup/memory" + n.CgroupPath(hog.Tenant, hog.ID) + "/memory.limit_in_bytes":       strconv.Itoa(64 << 20),
			"/sys/fs/cgroup/memory" + n.CgroupPath(steady.Tenant, steady.ID) + "/memory.limit_in_bytes": strconv.Itoa(32 << 20),
		} {
			b, err := os.ReadFile(file)
			if err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("%s = %q (%v), want %s", file, b, err, want)
			}
		}
	}

	var steps []wire.NoisyStep
	throttled := func() bool {
		for _, s := range steps {
			if s.Replica == hog.ID && s.Action == "throttle" {
				return true
			}
		}
		return false
	}
	for !throttled() {
		if time.Now().After(deadline) {
			t.Fatalf("hog not throttled within 120s; steps %+v, node pressure %.2f", steps, a.NodePressure())
		}
		steps = append(steps, a.MonitorOnce(ctx)...)
		time.Sleep(pol.Interval)
	}
	for _, s := range steps {
		if s.Replica != hog.ID {
			t.Errorf("a replica within its request was touched: %+v", s)
		}
	}
	if len(steps) < 2 || steps[0].Action != "throttle" || steps[1].Action != "report" {
		t.Fatalf("steps %+v, want throttle then its report", steps)
	}
	th := steps[0]
	if th.Error != "" || th.UsedMilliCPU <= th.RequestMilliCPU || th.RequestMilliCPU != 100 || th.Starved <= pol.Threshold || th.Victim == "" {
		t.Errorf("throttle step figures: %+v", th)
	}
	if q := quota(hog); q != 100 {
		t.Errorf("hog's quota after the throttle = %dm, want its request 100m", q)
	}
	if q := quota(steady); q != 1000 {
		t.Errorf("steady's quota = %dm, want 1000m (untouched)", q)
	}
	if q := quota(quiet); q != 1000 {
		t.Errorf("quiet's quota = %dm, want its limit 1000m (untouched)", q)
	}
	// The kernel enforces it: throttled periods grow (polled, no window
	// assumed).
	cg := replica.NewCgroup(n.CgroupPath(hog.Tenant, hog.ID))
	before, err := cg.Usage()
	if err != nil {
		t.Fatal(err)
	}
	for {
		u, err := cg.Usage()
		if err != nil {
			t.Fatal(err)
		}
		if u.Throttled > before.Throttled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no throttled period observed after the throttle: %+v", u)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Statuses show it; the steps wait for the control plane.
	st := a.Statuses()[hog.ID]
	if !st.Throttled || len(st.Noisy) < 2 {
		t.Errorf("hog status: throttled %v, steps %+v", st.Throttled, st.Noisy)
	}
	if st := a.Statuses()[steady.ID]; st.Throttled || len(st.Noisy) > 0 {
		t.Errorf("steady status touched: %+v", st)
	}
	if got := a.NoisySteps(wire.MaxNoisySteps); len(got) < 2 {
		t.Errorf("unsent steps %+v", got)
	}
	if cpu, ticks := a.MonitorCost(); ticks == 0 || cpu < 0 {
		t.Errorf("monitor cost %v over %d ticks", cpu, ticks)
	}
	fmt.Fprintf(os.Stderr, "throttled after %d steps: %s\n", len(steps), th.Reason)
}
