package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/app"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/runtime/drivertest"
)

// crashDirEnv makes TestCrashChild run `rung up` on that data directory
// until it is killed; the parent test kills it with SIGKILL.
const crashDirEnv = "RUNG_TEST_CRASH_DIR"

// TestCrashChild is the child process of TestCrashLoop, not a test.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child of TestCrashLoop only")
	}
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", ClientConfig: "-", Agent: os.Getenv("RUNG_TEST_CRASH_AGENT") == "1"}
	err := app.Up(context.Background(), cfg, nil, nil)
	t.Fatalf("up returned: %v", err)
}

// TestCrashLoop kills `rung up` with SIGKILL at random moments while
// clients apply objects, restarts it, and checks that every acknowledged
// write is there, and that the node agent neither leaks nor duplicates a
// container across the crashes.
func TestCrashLoop(t *testing.T) {
	drivertest.RequireRoot(t)
	agentOn := true
	for _, bin := range []string{"runc", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			agentOn = false // the write-loss half still runs
		}
	}
	dir := filepath.Join(drivertest.SearchableTempDir(t), "data")
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	var child *exec.Cmd
	start := func() *client.Client {
		t.Helper()
		var c *client.Client
		child, c = startCrashChild(t, dir, "RUNG_TEST_CRASH_AGENT="+map[bool]string{true: "1"}[agentOn])
		return c
	}
	kill := func() {
		_ = child.Process.Signal(syscall.SIGKILL)
		_, _ = child.Process.Wait()
	}
	t.Cleanup(func() {
		if child != nil && child.ProcessState == nil {
			kill()
		}
		cleanupContainers(dir)
	})

	ctx := t.Context()
	c := start()
	// Three replicas the agent keeps running across every crash.
	base := []any{topologyObj(), tenantObj()}
	for i := range 3 {
		base = append(base, workloadObj(fmt.Sprintf("keep%d", i), 1))
	}
	for _, o := range base {
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	var acked []string
	for round := range rounds {
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("r%dw%dn%d", round, w, i)
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := c.Apply(cctx, workloadObj(name, 0))
					cancel()
					if err != nil {
						return // the server died: this write was not acknowledged
					}
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		kill()
		close(stop)
		wg.Wait()
		c = start()
		// Every acknowledged write survived the crash.
		for _, name := range acked {
			if _, err := c.GetWorkload(ctx, "acme", name); err != nil {
				t.Fatalf("round %d: acknowledged workload %s lost: %v", round, name, err)
			}
		}
		if agentOn {
			waitContainers(t, dir, []string{"acme-keep0-0", "acme-keep1-0", "acme-keep2-0"})
		}
	}
	t.Logf("%d rounds, %d acknowledged applies, none lost", rounds, len(acked))
	kill()
}

// waitReady waits for the child's client config and /readyz.
func waitReady(t *testing.T, dir string) (*client.Client, error) {
	t.Helper()
	for range 600 {
		if cfg, err := client.LoadConfig(filepath.Join(dir, app.ClientConfigFile)); err == nil {
			resp, err := http.Get(cfg.Server + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return client.New(cfg.Server, cfg.Token)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("rung up in %s not ready", dir)
}

// waitContainers waits until runc runs exactly ids, each once.
func waitContainers(t *testing.T, dir string, ids []string) {
	t.Helper()
	var got []string
	for range 300 {
		got = runcRunning(dir)
		if slices.Equal(got, ids) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("runc containers %v, want exactly %v (leaked or duplicated)", got, ids)
}

func runcRunning(dir string) []string {
	out, err := exec.Command("runc", "--root", filepath.Join(dir, "runtimes", "runc", "state"), "list", "--format", "json").Output()
	if err != nil {
		return nil
	}
	var list []struct{ ID, Status string }
	_ = json.Unmarshal(out, &list)
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID+map[bool]string{true: "", false: "(" + c.Status + ")"}[c.Status == "running"])
	}
	slices.Sort(ids)
	return ids
}

func cleanupContainers(dir string) {
	root := filepath.Join(dir, "runtimes", "runc", "state")
	out, _ := exec.Command("runc", "--root", root, "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
	}
}

func topologyObj() *v1.Topology {
	return &v1.Topology{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTopology},
		Metadata: v1.ObjectMeta{Name: "lab"},
		Spec: v1.TopologySpec{Nodes: []v1.Node{{
			Name:     "h1",
			Capacity: v1.Resources{CPU: qty("64"), Memory: qty("256Gi")},
		}}},
	}
}

func tenantObj() *v1.Tenant {
	return &v1.Tenant{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTenant},
		Metadata: v1.ObjectMeta{Name: "acme"},
	}
}

func workloadObj(name string, replicas int) *v1.Workload {
	return &v1.Workload{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkload},
		Metadata: v1.ObjectMeta{Name: name, Tenant: "acme"},
		Spec: v1.WorkloadSpec{
			Image: "busybox:latest", Command: []string{"sleep", "3600"}, Replicas: &replicas,
			Resources: v1.Resources{CPU: qty("10m"), Memory: qty("16Mi"), PIDs: 16},
		},
	}
}

func qty(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}
