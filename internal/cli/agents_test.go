package cli

import (
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
)

// TestThreeAgents is DESIGN §3 and §7 on one machine: a control plane and
// three `rung agent`s (n1, n2, n3, each with its own data dir and node
// token) run one replica each under runc. n3's agent dies, leaving its
// container behind; after the node timeout n3 is down, its replica is
// re-placed on a survivor and really runs there, and the survivors did not
// move. When n3's agent comes back its leftover container is an orphan and
// is removed.
func TestThreeAgents(t *testing.T) {
	// The control plane: no in-process agent; the machine may be busy: a
	// node timeout long enough not to flap.
	h := newAgentHarness(t, 3*time.Second, hostSpread(3))
	dir, op := h.dir, h.op
	ctx := t.Context()
	start := func(node string) {
		h.Start(agentConfig{Node: node, Interval: 200 * time.Millisecond})
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		start(n)
	}

	// Each node runs its one replica, for real.
	want := map[string][]string{"n1": {"acme-web-0"}, "n2": {"acme-web-1"}, "n3": {"acme-web-2"}}
	waitRunning(t, dir, want)
	before := placements(t, op)

	// exec reaches each node's replica through that node's tunnel (the
	// agents listen on nothing): each answers with its own hostname.
	for i := range 3 {
		var out strings.Builder
		var code int
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			out.Reset()
			code, err = op.Exec(ctx, "acme", "web", i, []string{"hostname"}, client.ExecIO{Stdout: &out})
			if err == nil || time.Now().After(deadline) {
				break // a tunnel may still be connecting, or a replica reporting
			}
		}
		if want := "acme-web-" + strconv.Itoa(i) + "\n"; err != nil || code != 0 || out.String() != want {
			t.Errorf("exec hostname in replica %d = %q, code %d, err %v; want %q", i, out.String(), code, err, want)
		}
		// Its log comes through the same tunnel.
		line := "started acme-web-" + strconv.Itoa(i)
		var got []byte
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			rc, err := op.ReplicaLog(ctx, "acme", "web", i, logfile.ReadOptions{})
			if err == nil {
				got, _ = io.ReadAll(rc)
				rc.Close()
				if string(got) == line+"\n" {
					break
				}
			}
		}
		if string(got) != line+"\n" {
			t.Errorf("log of replica %d through its node's tunnel = %q, want %q", i, got, line)
		}
	}

	// n3's machine dies: its agent stops; its container is left behind.
	h.Stop("n3")
	deadline := time.Now().Add(60 * time.Second)
	var after map[string]string
	for {
		after = placements(t, op)
		if n := after["acme/web[2]"]; n != "" && n != "n3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme/web[2] not re-placed after 60s: %v", after)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for k, n := range before {
		if k != "acme/web[2]" && after[k] != n {
			t.Errorf("survivor %s moved from %s to %s", k, n, after[k])
		}
	}
	ns, err := op.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns.Nodes {
		if wantState := map[bool]string{true: wire.NodeDown, false: wire.NodeUp}[n.Name == "n3"]; n.State != wantState || !n.InTopology {
			t.Errorf("node %s: %s (in topology %v), want %s", n.Name, n.State, n.InTopology, wantState)
		}
	}
	if res, err := op.Plan(ctx); err != nil || len(res.Problems) != 0 || len(res.Unplaced) != 0 {
		t.Errorf("plan after n3 down: problems %q unplaced %v err %v (the spread is soft)", res.Problems, res.Unplaced, err)
	}
	moved := after["acme/web[2]"]
	want[moved] = append(want[moved], "acme-web-2")
	want["n3"] = []string{"acme-web-2"} // the dead machine's container, still there
	waitRunning(t, dir, want)

	// n3 comes back: up again, with nothing placed on it (the re-placed
	// replica stays where it now runs); its leftover is removed.
	start("n3")
	want["n3"] = nil
	waitRunning(t, dir, want)
	if got := placements(t, op); got["acme/web[2]"] != moved {
		t.Errorf("acme/web[2] moved again when n3 came back: %v", got)
	}
}

// placements is the operator's plan as "workload[replica]" → node.
func placements(t *testing.T, op *client.Client) map[string]string {
	t.Helper()
	res, err := op.Plan(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return byReplica(res)
}

func byReplica(res *scheduler.Result) map[string]string {
	m := map[string]string{}
	for _, p := range res.Placements {
		m[p.Workload+"["+strconv.Itoa(p.Replica)+"]"] = p.Node
	}
	return m
}

// waitRunning polls each node's data dir until it holds exactly the wanted
// replicas, each running under runc.
func waitRunning(t *testing.T, dir string, want map[string][]string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var got map[string][]string
	for {
		got = map[string][]string{}
		ok := true
		for node, ids := range want {
			rn, err := replica.Open(t.Context(), filepath.Join(dir, node), replica.Options{})
			if err != nil {
				t.Fatal(err)
			}
			recs, err := rn.Records()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				st, err := rn.State(t.Context(), r.Spec.ID)
				status := "missing"
				if err == nil {
					status = string(st.Status)
				}
				got[node] = append(got[node], r.Spec.ID+"="+status)
				if status != string(runtime.Running) {
					ok = false
				}
			}
			if len(recs) != len(ids) {
				ok = false
			}
			for i, r := range recs {
				if i < len(ids) && r.Spec.ID != ids[i] {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s nodes run %v, want %v (all running)", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
