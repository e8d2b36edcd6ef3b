package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/replica"
)

func volumeYAML(tenant, name, size string) []byte {
	return []byte("apiVersion: rung.dev/v1\nkind: Volume\nmetadata: {name: " + name + ", tenant: " + tenant + "}\nspec: {size: " + size + "}\n")
}

// TestVolumes: a Volume is stored with a uid, another tenant's is a 404,
// its size can't change, the plan binds it to the node of its first
// replica (and keeps it there), it can't be deleted while mounted, and a
// deletion is a tombstone its node learns of.
func TestVolumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	ctx := t.Context()
	const path = "/v1/tenants/biology/volumes/pg"
	if r := e.do("admin", "PUT", path, volumeYAML("biology", "pg", "1Gi")); r.status != http.StatusCreated {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	if r := e.do("admin", "PUT", path, volumeYAML("biology", "pg", "1Gi")); r.status != http.StatusOK || !strings.Contains(string(r.body), "unchanged") {
		t.Errorf("apply again: %d %s", r.status, r.body)
	}
	var vol v1.Volume
	if err := json.Unmarshal(e.get(path), &vol); err != nil || vol.Status == nil || len(vol.Status.UID) != 16 || vol.Spec.DataClass != v1.DataInternal {
		t.Fatalf("stored volume %+v (%v): want a uid and the default class", vol, err)
	}
	if r := e.do("admin", "PUT", path, volumeYAML("biology", "pg", "2Gi")); r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "spec.size: 1Gi can't change to 2Gi") {
		t.Errorf("resize: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		who, method, path string
		want              int
	}{
		{"geo-admin", "GET", path, http.StatusNotFound},
		{"geo-admin", "DELETE", path, http.StatusNotFound},
		{"geo-admin", "PUT", path, http.StatusNotFound},
		{"viewer", "GET", path, http.StatusOK},
		{"viewer", "DELETE", path, http.StatusForbidden},
	} {
		if r := e.do(tc.who, tc.method, tc.path, volumeYAML("biology", "pg", "1Gi")); r.status != tc.want {
			t.Errorf("%s %s as %s: %d, want %d (%s)", tc.method, tc.path, tc.who, r.status, tc.want, r.body)
		}
	}
	if r := e.do("geo-admin", "GET", "/v1/volumes", nil); r.status != http.StatusOK || strings.Contains(string(r.body), `"pg"`) {
		t.Errorf("geology lists biology's volumes: %d %s", r.status, r.body)
	}
	if r := e.do("admin", "GET", "/v1/volumes", nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"pg"`) {
		t.Errorf("biology lists its volumes: %d %s", r.status, r.body)
	}

	// A workload mounting it: planned, bound, and the volume is in use.
	wl := `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: biology}
spec:
  image: busybox:latest
  resources: {cpu: 100m, memory: 64Mi}
  volumes: [{name: pg, mountPath: /data}]
`
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/db", []byte(wl)); r.status != http.StatusCreated {
		t.Fatalf("apply workload: %d %s", r.status, r.body)
	}
	specs, err := e.srv.Desired(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var node string
	for _, s := range specs {
		if s.ID == "biology-db-0" {
			if len(s.Volumes) != 1 || s.Volumes[0].Name != "pg" || s.Volumes[0].UID != vol.Status.UID || s.Volumes[0].Size != 1<<30 || s.Volumes[0].MountPath != "/data" {
				t.Errorf("spec volumes %+v", s.Volumes)
			}
		}
	}
	var bind struct{ Node, UID string }
	if err := json.Unmarshal(mustGet(t, e, "/volumebindings/biology/pg"), &bind); err != nil || bind.Node == "" || bind.UID != vol.Status.UID {
		t.Fatalf("binding %+v, %v", bind, err)
	}
	node = bind.Node
	if r := e.do("admin", "DELETE", path, nil); r.status != http.StatusConflict || !strings.Contains(string(r.body), "mounted by workload(s) db") {
		t.Errorf("delete while mounted: %d %s", r.status, r.body)
	}
	if r := e.do("admin", "DELETE", "/v1/tenants/biology/workloads/db", nil); r.status != http.StatusOK {
		t.Fatalf("delete workload: %d %s", r.status, r.body)
	}
	// Applied again, the workload goes back to the volume's node.
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/db", []byte(wl)); r.status != http.StatusCreated {
		t.Fatalf("apply workload again: %d %s", r.status, r.body)
	}
	if _, err := e.srv.Desired(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if r := e.do("admin", "GET", "/v1/tenants/biology/workloads/db", nil); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	mine, err := e.srv.Desired(ctx, node)
	if err != nil || !hasReplica(mine, "biology-db-0") {
		t.Errorf("node %s after the workload came back: %d replicas (%v); want biology-db-0 there", node, len(mine), err)
	}
	if r := e.do("admin", "DELETE", "/v1/tenants/biology/workloads/db", nil); r.status != http.StatusOK {
		t.Fatalf("delete workload: %d %s", r.status, r.body)
	}
	if r := e.do("admin", "DELETE", path, nil); r.status != http.StatusOK {
		t.Fatalf("delete volume: %d %s", r.status, r.body)
	}
	dels, err := e.srv.VolumeDeletions(ctx, node)
	if err != nil || len(dels) != 1 || dels[0].UID != vol.Status.UID || dels[0].Name != "pg" {
		t.Errorf("deletions for %s: %+v, %v", node, dels, err)
	}
	if dels, _ := e.srv.VolumeDeletions(ctx, "some-other-node"); len(dels) != 0 {
		t.Errorf("another node learns of it: %+v", dels)
	}
	if r := e.do("operator", "GET", "/v1/tenants/biology/volumes/pg", nil); r.status != http.StatusNotFound {
		t.Errorf("deleted volume: %d", r.status)
	}
}

func mustGet(t *testing.T, e *env, key string) []byte {
	t.Helper()
	v, err := e.store.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("store get %s: %v", key, err)
	}
	return v.Data
}

func hasReplica(specs []replica.Spec, id string) bool {
	for _, s := range specs {
		if s.ID == id {
			return true
		}
	}
	return false
}
