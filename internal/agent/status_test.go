package agent_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// realNode is a node on this machine with the project's busybox image.
func realNode(t *testing.T) *replica.Node {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	ctx := t.Context()
	node, err := replica.Open(ctx, drivertest.SearchableTempDir(t), replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Images().Pack(ctx, root, "busybox:latest", image.PackOptions{Healthcheck: image.BusyboxHealthcheck()}); err != nil {
		t.Fatal(err)
	}
	return node
}

// statusAgent is an agent over node running desired, on a clock the test
// moves (for back-off), removing everything at the end.
func statusAgent(t *testing.T, node *replica.Node, desired *[]replica.Spec) (*agent.Agent, *time.Time) {
	t.Helper()
	src := agent.SourceFunc(func(context.Context) ([]replica.Spec, error) { return *desired, nil })
	clock := time.Unix(1000, 0)
	a := agent.New(node, src, agent.Options{Now: func() time.Time { return clock }})
	t.Cleanup(func() {
		a.Close()
		*desired = nil
		_, _ = agent.New(node, src, agent.Options{}).Reconcile(context.Background())
	})
	return a, &clock
}

// until reconciles a until cond holds for replica id's status.
// sicken removes the replica's /tmp/ok, so its health check fails from
// then on. The test does it, not a timer in the replica: on a loaded
// machine a check in a sandbox can take longer than any fixed window.
func sicken(t *testing.T, node *replica.Node, id string) {
	t.Helper()
	var out bytes.Buffer
	if code, err := node.Exec(t.Context(), id, []string{"rm", "/tmp/ok"}, runtime.ExecIO{Stdout: &out, Stderr: &out}); err != nil || code != 0 {
		t.Fatalf("rm /tmp/ok in %s: exit %d, %v: %s", id, code, err, out.String())
	}
}

func until(t *testing.T, a *agent.Agent, id, what string, cond func(wire.ReplicaState) bool) wire.ReplicaState {
	t.Helper()
	var st wire.ReplicaState
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := a.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		st = a.Statuses()[id]
		if cond(st) {
			return st
		}
	}
	t.Fatalf("%s never became %s; last status %+v", id, what, st)
	return st
}

// TestStatusRealReplicas: what a user sees of replicas that fail, stop and
// turn unhealthy, on real runc and runsc replicas.
func TestStatusRealReplicas(t *testing.T) {
	node := realNode(t)
	for _, tier := range []tenancy.Tier{tenancy.Container, tenancy.Sandbox} {
		t.Run(tier.String(), func(t *testing.T) {
			if tier == tenancy.Sandbox {
				drivertest.RequireBinary(t, "runsc")
			}
			p := tier.String()[:3]
			spec := func(name string, args ...string) replica.Spec {
				return replica.Spec{ID: "acme-" + p + name + "-0", Tenant: "acme", Tier: tier, Image: "busybox:latest", Args: args}
			}
			t.Run("MissingExecutable", func(t *testing.T) {
				s := spec("nobin", "/bin/srv")
				desired := []replica.Spec{s}
				a, clock := statusAgent(t, node, &desired)
				st := until(t, a, s.ID, "restarting", func(st wire.ReplicaState) bool { return st.State == wire.ReplicaRestarting })
				if st.LastError != "executable /bin/srv not found in image" {
					t.Errorf("lastError = %q, want the missing executable named", st.LastError)
				}
				// Back-off: tried again only once the clock allows, and counted.
				*clock = clock.Add(10 * time.Second)
				st = until(t, a, s.ID, "restarted", func(st wire.ReplicaState) bool { return st.Restarts >= 1 })
				if st.State != wire.ReplicaRestarting || st.Health == wire.HealthHealthy {
					t.Errorf("a replica that can't start shows %+v", st)
				}
				// A new agent (the old one restarted) takes up its history.
				b, _ := statusAgent(t, node, &desired)
				if _, err := b.Reconcile(t.Context()); err != nil {
					t.Fatal(err)
				}
				if again := b.Statuses()[s.ID]; again.Restarts < st.Restarts || again.LastError != st.LastError {
					t.Errorf("after an agent restart: %+v, want at least %d restarts and the same last error", again, st.Restarts)
				}
			})
			t.Run("NeverExit3", func(t *testing.T) {
				s := spec("never", "sh", "-c", "exit 3")
				s.RestartPolicy = v1.RestartNever
				desired := []replica.Spec{s}
				a, clock := statusAgent(t, node, &desired)
				st := until(t, a, s.ID, "failed", func(st wire.ReplicaState) bool { return st.State == wire.ReplicaFailed })
				if st.ExitCode == nil || *st.ExitCode != 3 || st.LastError != "exited with code 3" {
					t.Errorf("status = %+v, want exit code 3", st)
				}
				*clock = clock.Add(time.Hour)
				if r, _ := a.Reconcile(t.Context()); len(r.Done) != 0 {
					t.Errorf("restartPolicy Never restarted: %+v", r.Done)
				}
				// Control: the same exit under Always is restarted.
				s.RestartPolicy = v1.RestartAlways
				s.ID = "acme-" + p + "always-0"
				desired = []replica.Spec{s}
				st = until(t, a, s.ID, "restarted", func(st wire.ReplicaState) bool {
					*clock = clock.Add(time.Minute)
					return st.Restarts >= 1
				})
				if st.ExitCode == nil || *st.ExitCode != 3 {
					t.Errorf("status under Always = %+v, want the last exit code 3", st)
				}
			})
			t.Run("OnFailureSucceeded", func(t *testing.T) {
				s := spec("once", "true")
				s.RestartPolicy = v1.RestartOnFailure
				desired := []replica.Spec{s}
				a, _ := statusAgent(t, node, &desired)
				st := until(t, a, s.ID, "succeeded", func(st wire.ReplicaState) bool { return st.State == wire.ReplicaSucceeded })
				if st.Restarts != 0 || st.ExitCode == nil || *st.ExitCode != 0 {
					t.Errorf("status = %+v", st)
				}
			})
			t.Run("Usage", func(t *testing.T) {
				// A busy replica uses clearly more CPU than an idle one (the
				// machine is shared: no absolute figure); both have
				// memory and tasks, read from their cgroups.
				busy, idle := spec("busy", "sh", "-c", "while :; do :; done"), spec("idle", "sleep", "300")
				desired := []replica.Spec{busy, idle}
				a, _ := statusAgent(t, node, &desired)
				for _, id := range []string{busy.ID, idle.ID} {
					until(t, a, id, "running", func(st wire.ReplicaState) bool { return st.State == wire.ReplicaRunning })
				}
				a.Statuses()
				// On a loaded machine the busy one may get little CPU in
				// one window: sample until it shows, for a minute at most.
				deadline := time.Now().Add(time.Minute)
				for {
					time.Sleep(1500 * time.Millisecond)
					st := a.Statuses()
					b, i := st[busy.ID].Usage, st[idle.ID].Usage
					if b == nil || i == nil {
						t.Fatalf("no usage: busy %+v idle %+v", st[busy.ID], st[idle.ID])
					}
					ok := b.MilliCPU >= i.MilliCPU+100 && b.Memory > 0 && i.PIDs >= 1
					if ok {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("usage: busy %+v, idle %+v; want the busy one using CPU and the idle one not", *b, *i)
					}
				}
			})
			t.Run("ImageHealthcheck", func(t *testing.T) {
				// The image's own HEALTHCHECK (CMD-SHELL, with its interval and
				// retries) is run when the workload sets none.
				root := t.TempDir()
				if err := image.BusyboxRoot(root); err != nil {
					t.Fatal(err)
				}
				if _, err := node.Images().Pack(t.Context(), root, "checked:1", image.PackOptions{
					Healthcheck: []string{"CMD-SHELL", "test -f /tmp/ok"}, HealthInterval: 300 * time.Millisecond,
					HealthTimeout: 5 * time.Second, HealthRetries: 2,
				}); err != nil {
					t.Fatal(err)
				}
				s := spec("imgsick", "sh", "-c", "touch /tmp/ok; exec sleep 300")
				s.Image = "checked:1"
				desired := []replica.Spec{s}
				a, clock := statusAgent(t, node, &desired)
				until(t, a, s.ID, "healthy by the image's check", func(st wire.ReplicaState) bool {
					return st.State == wire.ReplicaRunning && st.Health == wire.HealthHealthy
				})
				sicken(t, node, s.ID)
				st := until(t, a, s.ID, "restarted by the image's check", func(st wire.ReplicaState) bool {
					*clock = clock.Add(time.Minute)
					return st.Restarts >= 1
				})
				if !strings.Contains(st.LastError, `health check "/bin/sh -c test -f /tmp/ok" failed 2 times in a row`) {
					t.Errorf("lastError = %q, want the image's failing health check", st.LastError)
				}
			})
			t.Run("Unhealthy", func(t *testing.T) {
				// Healthy while /tmp/ok exists; once the test removes it the
				// check fails from then on.
				s := spec("sick", "sh", "-c", "touch /tmp/ok; exec sleep 300")
				s.Healthcheck = &replica.Healthcheck{Command: []string{"test", "-f", "/tmp/ok"}, Interval: 300 * time.Millisecond, Timeout: 5 * time.Second, Retries: 2}
				desired := []replica.Spec{s}
				a, clock := statusAgent(t, node, &desired)
				st := until(t, a, s.ID, "running and healthy", func(st wire.ReplicaState) bool {
					return st.State == wire.ReplicaRunning && st.Health == wire.HealthHealthy
				})
				sicken(t, node, s.ID)
				st = until(t, a, s.ID, "restarted for its health", func(st wire.ReplicaState) bool {
					*clock = clock.Add(time.Minute)
					return st.Restarts >= 1
				})
				if !strings.Contains(st.LastError, `health check "test -f /tmp/ok" failed 2 times in a row`) {
					t.Errorf("lastError = %q, want the failing health check", st.LastError)
				}
			})
		})
	}
}
