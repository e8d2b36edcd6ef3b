package app

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/store/etcd/etcdtest"
)

// TestUpOnEtcd: `rung up --store etcd://…` against a real 3-member etcd
// cluster on loopback: apply the university example, read it back and
// plan it; the data outlives the control plane (a second `up` on another
// data directory sees it), which is the point of etcd.
func TestUpOnEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	var hosts []string
	for _, e := range cluster.Endpoints() {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	storeURL := "etcd://" + strings.Join(hosts, ",") + "/rung-test"
	cfg := Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Store: storeURL, ClientConfig: "-"}
	info, stop := up(t, cfg)
	if !strings.HasPrefix(info.Store, "etcd") {
		t.Errorf("store %q, want etcd", info.Store)
	}
	c := operatorClient(t, cfg.DataDir, info)
	set, err := v1.Load(filepath.Join("..", "..", "examples", "university"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplySet(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Another control plane, another data directory, the same etcd.
	cfg2 := Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Store: storeURL, ClientConfig: "-"}
	info2, stop2 := up(t, cfg2)
	defer stop2()
	c2 := operatorClient(t, cfg2.DataDir, info2)
	w, err := c2.GetWorkload(t.Context(), "biology", "sequencer")
	if err != nil || w.Spec.Replicas == nil || *w.Spec.Replicas != 3 {
		t.Fatalf("workload after the restart on etcd: %+v, %v", w, err)
	}
	// The new control plane leads once the stopped one's leadership is
	// gone (at most the lease), then plans everything.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := c2.Plan(t.Context())
		if err == nil && len(res.Placements) == 7 && len(res.Unplaced) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plan on etcd: %+v, %v", res, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func operatorClient(t *testing.T, dataDir string, info Info) *client.Client {
	t.Helper()
	cfg, err := client.LoadConfig(filepath.Join(dataDir, ClientConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(info.URL, cfg.Token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
