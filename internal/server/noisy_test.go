package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

const noisyNodes = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: two}
spec:
  nodes:
  - {name: n1, capacity: {cpu: 4, memory: 4Gi}}
  - {name: n2, capacity: {cpu: 4, memory: 4Gi}}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: hog, tenant: acme}
spec:
  image: busybox:latest
  resources: {cpu: 100m, memory: 32Mi, pids: 32, limits: {cpu: 2, memory: 64Mi}}
---
apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec:
  noisy: {threshold: 20, actions: [throttle, report, move], interval: 1s}
`

// TestNoisyMove: two nodes with agents (their tokens and heartbeats). The
// burstable replica's spec carries its limits and the site's ladder; the
// node it runs on reports throttle, report and move, and the control plane
// audits each step with its figures and places the replica on the other
// node. A node can't move a replica it does not run.
func TestNoisyMove(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	set, err := v1.Decode("noisy.yaml", []byte(noisyNodes))
	if err != nil {
		t.Fatal(err)
	}
	op := e.client("operator")
	if _, err := op.ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	cs := map[string]*client.Client{}
	for _, n := range []string{"n1", "n2"} {
		tok, err := op.CreateNodeToken(ctx, n, "agent of "+n)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[n] = tok.Token
		cs[n] = e.client(n)
		if err := cs[n].Heartbeat(ctx, n, wire.Heartbeat{Runtimes: []string{"container"}}); err != nil {
			t.Fatal(err)
		}
	}
	nodeOfHog := func() string {
		t.Helper()
		res, err := op.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return where(res)["acme/hog[0]"]
	}
	from := nodeOfHog()
	other := map[string]string{"n1": "n2", "n2": "n1"}[from]
	if other == "" {
		t.Fatalf("hog placed on %q", from)
	}
	specs, err := cs[from].NodeReplicas(ctx, from)
	if err != nil || len(specs) != 1 {
		t.Fatalf("%s desired %+v, %v", from, specs, err)
	}
	if s := specs[0]; s.Limits == nil || s.Limits.MilliCPU != 2000 || s.Resources.MilliCPU != 100 || s.Noisy == nil || s.Noisy.Threshold != 0.2 || s.Noisy.Interval != time.Second {
		t.Fatalf("spec lacks its limits or the ladder: %+v limits %+v noisy %+v", s, s.Limits, s.Noisy)
	}
	step := func(action string) wire.NoisyStep {
		return wire.NoisyStep{At: time.Now().UTC(), Replica: "acme-hog-0", Tenant: "acme", Action: action,
			Reason: "using 1900m of a 100m request while node starved 60% (threshold 20%)", UsedMilliCPU: 1900, RequestMilliCPU: 100, Victim: "node", Starved: 0.6, Threshold: 0.2}
	}
	// The other node can't move it.
	if err := cs[other].Heartbeat(ctx, other, wire.Heartbeat{Runtimes: []string{"container"}, Noisy: []wire.NoisyStep{step("move")}}); err != nil {
		t.Fatal(err)
	}
	if got := nodeOfHog(); got != from {
		t.Fatalf("moved to %s by a node that does not run it", got)
	}
	hb := wire.Heartbeat{Runtimes: []string{"container"}, Noisy: []wire.NoisyStep{step("throttle"), step("report"), step("move")}}
	if err := cs[from].Heartbeat(ctx, from, hb); err != nil {
		t.Fatal(err)
	}
	if got := nodeOfHog(); got != other {
		t.Fatalf("after the move the hog is on %s, want %s", got, other)
	}
	for n, want := range map[string]int{from: 0, other: 1} {
		specs, err := cs[n].NodeReplicas(ctx, n)
		if err != nil || len(specs) != want {
			t.Errorf("%s desired %d replicas (%v), want %d", n, len(specs), err, want)
		}
	}
	evs, err := op.TailEvents(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs.Events {
		if strings.HasPrefix(ev.Action, "noisy.") {
			got = append(got, ev.Actor+" "+ev.Action+" "+ev.Kind+"/"+ev.Name+" "+ev.Result)
			if !strings.Contains(ev.Message, "1900m of a 100m request") || !strings.Contains(ev.Message, "on node "+from) {
				t.Errorf("event message lacks the figures: %q", ev.Message)
			}
		}
	}
	want := []string{
		"node/" + from + " noisy.throttle Replica/acme-hog-0 applied",
		"node/" + from + " noisy.report Replica/acme-hog-0 applied",
		"node/" + from + " noisy.move Replica/acme-hog-0 applied",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("noisy audit events (-want +got):\n%s", diff)
	}
}

// TestNoisyIsolate: a ladder ending in isolate raises the noisy replica's
// workload to the host tier (the planner's host floor): it leaves the node
// it was noisy on for a host with no other replica (the spare node n3 or
// whichever is free), and the step is audited with its figures.
func TestNoisyIsolate(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	manifest := strings.Replace(noisyNodes, "[throttle, report, move]", "[throttle, report, isolate]", 1)
	manifest = strings.ReplaceAll(manifest, "memory: 4Gi}}", "memory: 4Gi}, runtimes: [container, host]}") + `---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: beta}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: beta}
spec:
  image: busybox:latest
  replicas: 1
  resources: {cpu: 3, memory: 32Mi, pids: 32}
---
apiVersion: rung.dev/v1
kind: Topology
metadata: {name: spare}
spec:
  nodes:
  - {name: n3, capacity: {cpu: 4, memory: 4Gi}, runtimes: [container, host]}
`
	set, err := v1.Decode("noisy.yaml", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	op := e.client("operator")
	if _, err := op.ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	cs := map[string]*client.Client{}
	for _, n := range []string{"n1", "n2", "n3"} {
		tok, err := op.CreateNodeToken(ctx, n, "agent of "+n)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[n] = tok.Token
		cs[n] = e.client(n)
		if err := cs[n].Heartbeat(ctx, n, wire.Heartbeat{Runtimes: []string{"container", "host"}}); err != nil {
			t.Fatal(err)
		}
	}
	plan := func() map[string]string {
		t.Helper()
		res, err := op.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := where(res)
		for _, u := range res.Unplaced {
			t.Logf("unplaced %+v", u)
		}
		for _, p := range res.Placements {
			m[p.Workload+"["+itoa(p.Replica)+"].tier"] = p.Tier
		}
		return m
	}
	before := plan()
	from := before["acme/hog[0]"]
	if from == "" || before["acme/hog[0].tier"] == "host" {
		t.Fatalf("before: hog should run below the host tier: %v", before)
	}
	st := wire.NoisyStep{At: time.Now().UTC(), Replica: "acme-hog-0", Tenant: "acme", Action: "isolate",
		Reason: "using 1900m of a 100m request while node starved 60% (threshold 20%)", UsedMilliCPU: 1900, RequestMilliCPU: 100, Victim: "node", Starved: 0.6, Threshold: 0.2}
	if err := cs[from].Heartbeat(ctx, from, wire.Heartbeat{Runtimes: []string{"container", "host"}, Noisy: []wire.NoisyStep{st}}); err != nil {
		t.Fatal(err)
	}
	after := plan()
	to := after["acme/hog[0]"]
	if to == "" || to == from || after["acme/hog[0].tier"] != "host" {
		t.Fatalf("after isolate: hog on %q tier %q (from %s), want another node at tier host: %v", to, after["acme/hog[0].tier"], from, after)
	}
	if got := nodeOf(after, to); len(got) != 1 {
		t.Errorf("the isolated hog's node %s also runs %v", to, got)
	}
	evs, err := op.TailEvents(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs.Events {
		if ev.Action == "noisy.isolate" {
			found = true
			if !strings.Contains(ev.Message, "1900m of a 100m request") || !strings.Contains(ev.Message, "host tier") || ev.Result != "applied" {
				t.Errorf("isolate event: %+v", ev)
			}
		}
	}
	if !found {
		t.Error("no noisy.isolate event")
	}
}
