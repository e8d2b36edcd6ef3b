package server_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/secret"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
)

// reservedTestPort stands for a port rung listens on (the API's) in
// TestCrossTenantNames; it is inside the default node-port range, so
// that only the reservation refuses it.
const reservedTestPort = 30500

// workloadYAML is a biology or geology workload with the given spec lines
// (indented by two spaces) after its image and resources.
func workloadYAML(tenant, name, spec string) []byte {
	return []byte("apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: " + name + ", tenant: " + tenant + "}\nspec:\n" +
		"  image: busybox:latest\n  resources: {cpu: 100m, memory: 64Mi}\n" + spec)
}

// TestCrossTenantNames: what a tenant's manifest names is resolved in its
// own tenant or refused with the field and the fix, never in another
// tenant's; each refusal comes with the allowed case working.
func TestCrossTenantNames(t *testing.T) {
	t.Parallel()
	kr, err := secret.Open(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *server.Config) {
		c.Secrets = kr
		c.ReservedPorts = []int{reservedTestPort}
		c.Limits = server.Limits{TokenRate: 1e6, TokenBurst: 1e6}
	}).seed()
	ctx := t.Context()
	put := func(who, path string, body []byte) response {
		t.Helper()
		return e.do(who, "PUT", path, body)
	}
	// refused checks a 4xx answer whose message or details hold every
	// one of want.
	refused := func(what string, r response, status int, want ...string) {
		t.Helper()
		if r.status != status {
			t.Errorf("%s: %d %s, want %d", what, r.status, r.body, status)
			return
		}
		we := r.error(t)
		all := we.Message + " " + strings.Join(we.Details, " ")
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("%s: %q lacks %q", what, all, w)
			}
		}
	}
	created := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusCreated && r.status != http.StatusOK {
			t.Errorf("%s (the allowed case): %d %s", what, r.status, r.body)
		}
	}

	t.Run("volume named like another tenant's", func(t *testing.T) {
		created("biology's volume pg", put("admin", "/v1/tenants/biology/volumes/pg", volumeYAML("biology", "pg", "1Gi")))
		created("biology's volume only-bio", put("admin", "/v1/tenants/biology/volumes/only-bio", volumeYAML("biology", "only-bio", "1Gi")))
		created("geology's own volume pg", put("geo-admin", "/v1/tenants/geology/volumes/pg", volumeYAML("geology", "pg", "1Gi")))
		var bio, geo v1.Volume
		if json.Unmarshal(e.get("/v1/tenants/biology/volumes/pg"), &bio) != nil || json.Unmarshal(e.get("/v1/tenants/geology/volumes/pg"), &geo) != nil ||
			bio.Status == nil || geo.Status == nil || bio.Status.UID == geo.Status.UID {
			t.Fatalf("two tenants' volumes pg: %+v %+v, want two of their own", bio.Status, geo.Status)
		}
		// Geology's workload mounting pg gets geology's pg.
		created("geology mounts its pg", put("geo-admin", "/v1/tenants/geology/workloads/db", workloadYAML("geology", "db", "  volumes: [{name: pg, mountPath: /data}]\n")))
		// Naming biology's volume by TENANT/NAME is refused, by name alone
		// it is looked up in geology, where it does not exist: the replica
		// waits, and nothing says biology has one.
		refused("TENANT/NAME volume", put("geo-admin", "/v1/tenants/geology/workloads/steal", workloadYAML("geology", "steal", "  volumes: [{name: biology/only-bio, mountPath: /data}]\n")),
			http.StatusUnprocessableEntity, "spec.volumes[0].name", "not a DNS label")
		created("geology names only-bio", put("geo-admin", "/v1/tenants/geology/workloads/steal", workloadYAML("geology", "steal", "  volumes: [{name: only-bio, mountPath: /data}]\n")))
		specs, err := e.srv.Desired(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			switch s.ID {
			case "geology-db-0":
				if len(s.Volumes) != 1 || s.Volumes[0].UID != geo.Status.UID {
					t.Errorf("geology's db mounts %+v, want geology's pg (uid %s)", s.Volumes, geo.Status.UID)
				}
			case "geology-steal-0":
				t.Errorf("geology's steal runs with %+v: it names a volume geology does not have", s.Volumes)
			}
		}
		if !hasReplica(specs, "geology-db-0") {
			t.Errorf("geology's db not planned: %v", specs)
		}
		r := e.do("geo-admin", "GET", "/v1/replicas", nil)
		if r.status != http.StatusOK || strings.Contains(string(r.body), "biology") || !strings.Contains(string(r.body), "only-bio") {
			t.Errorf("geology's replicas: %d %s; want steal pending on only-bio, and no word of biology", r.status, r.body)
		}
	})

	t.Run("secret of another tenant", func(t *testing.T) {
		created("biology's secret", put("admin", "/v1/tenants/biology/secrets/db", secretJSON("biology", "db", map[string]string{"password": dbPassword})))
		refused("TENANT/NAME secret", put("geo-admin", "/v1/tenants/geology/workloads/s", workloadYAML("geology", "s", "  secrets: [{name: biology/db, mountPath: /run/secrets/db}]\n")),
			http.StatusUnprocessableEntity, "spec.secrets[0].name", "not a DNS label")
		created("geology names db", put("geo-admin", "/v1/tenants/geology/workloads/s", workloadYAML("geology", "s", "  secrets: [{name: db, mountPath: /run/secrets/db}]\n")))
		// What a node delivers for geology's db is geology's: none.
		if data, err := e.srv.SecretData(ctx, "geology", "db", "n1"); err == nil || len(data) != 0 {
			t.Errorf("geology's secret db: %v %v, want none", data, err)
		}
		if data, err := e.srv.SecretData(ctx, "biology", "db", "n1"); err != nil || data["password"] != dbPassword {
			t.Errorf("biology's secret db: %v", err)
		}
		refused("secret key ../x", put("admin", "/v1/tenants/biology/secrets/k", secretJSON("biology", "k", map[string]string{"../x": "v"})),
			http.StatusUnprocessableEntity, `spec.data["../x"]`, "not a usable file name", "fix:")
		created("secret key tls.key", put("admin", "/v1/tenants/biology/secrets/k", secretJSON("biology", "k", map[string]string{"tls.key": "v"})))
	})

	t.Run("mount paths", func(t *testing.T) {
		for _, p := range []string{"/proc", "/proc/self", "/dev", "/dev/shm", "/sys", "/", "/data/../etc", "..", "data", "/data/", "/tmp"} {
			for _, kind := range []string{"volumes", "secrets"} {
				spec := "  " + kind + ": [{name: pg, mountPath: '" + p + "'}]\n"
				refused(kind+" at "+p, put("admin", "/v1/tenants/biology/workloads/m", workloadYAML("biology", "m", spec)),
					http.StatusUnprocessableEntity, "spec."+kind+"[0].mountPath", "fix:")
			}
		}
		created("volume at /data, secret at /run/secrets/db", put("admin", "/v1/tenants/biology/workloads/m",
			workloadYAML("biology", "m", "  volumes: [{name: pg, mountPath: /data}]\n  secrets: [{name: db, mountPath: /run/secrets/db}]\n")))
	})

	t.Run("allowTenants", func(t *testing.T) {
		refused("a tenant that does not exist", put("admin", "/v1/tenants/biology/workloads/web", workloadYAML("biology", "web", "  ports: [{port: 8080, allowTenants: [geology, nobody]}]\n")),
			http.StatusUnprocessableEntity, "spec.ports[0].allowTenants[1]", `tenant "nobody" does not exist`, "fix:")
		refused("not a name", put("admin", "/v1/tenants/biology/workloads/web", workloadYAML("biology", "web", "  ports: [{port: 8080, allowTenants: ['*']}]\n")),
			http.StatusUnprocessableEntity, "spec.ports[0].allowTenants[0]", "not a DNS label")
		created("geology", put("admin", "/v1/tenants/biology/workloads/web", workloadYAML("biology", "web", "  ports: [{port: 8080, allowTenants: [geology]}]\n")))
	})

	t.Run("node ports", func(t *testing.T) {
		refused("the API's port", put("admin", "/v1/tenants/biology/workloads/pub", workloadYAML("biology", "pub", "  ports: [{port: 8080, publish: true, nodePort: "+itoa(reservedTestPort)+"}]\n")),
			http.StatusUnprocessableEntity, "spec.ports[0].nodePort", "rung itself listens on", "fix:")
		refused("outside the range", put("admin", "/v1/tenants/biology/workloads/pub", workloadYAML("biology", "pub", "  ports: [{port: 8080, publish: true, nodePort: 7440}]\n")),
			http.StatusUnprocessableEntity, "spec.ports[0].nodePort", "outside the node-port range")
		created("a free node port", put("admin", "/v1/tenants/biology/workloads/pub", workloadYAML("biology", "pub", "  ports: [{port: 8080, publish: true, nodePort: 30080}]\n")))
		r := put("geo-admin", "/v1/tenants/geology/workloads/pub2", workloadYAML("geology", "pub2", "  ports: [{port: 9090, publish: true, nodePort: 30080}]\n"))
		refused("another tenant's node port", r, http.StatusConflict, "spec.ports[0].nodePort", "already published by another workload", "fix:")
		if strings.Contains(string(r.body), "biology") {
			t.Errorf("the refusal names biology to geology: %s", r.body)
		}
		created("geology's own node port", put("geo-admin", "/v1/tenants/geology/workloads/pub2", workloadYAML("geology", "pub2", "  ports: [{port: 9090, publish: true, nodePort: 30081}]\n")))
		// Re-applying biology's own workload is not a collision with itself.
		created("biology again", put("admin", "/v1/tenants/biology/workloads/pub", workloadYAML("biology", "pub", "  replicas: 2\n  ports: [{port: 8080, publish: true, nodePort: 30080}]\n")))
		var l wire.Replicas
		if r := e.do("admin", "GET", "/v1/replicas", nil); r.status != http.StatusOK || json.Unmarshal(r.body, &l) != nil {
			t.Fatalf("replicas: %d %s", r.status, r.body)
		}
	})
}

// TestSiteConsentAtApply: a Policy's network consent (egress, ports below
// 1024) counts when a tenant applies a workload; without it the same
// workload is refused, naming the field.
func TestSiteConsentAtApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	spec := "  egress: true\n  ports: [{port: 80}]\n"
	r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/web", workloadYAML("biology", "web", spec))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "spec.egress") || !strings.Contains(string(r.body), "spec.ports[0].port") {
		t.Errorf("without consent: %d %s", r.status, r.body)
	}
	policy := `{"apiVersion":"rung.dev/v1","kind":"Policy","metadata":{"name":"net"},"spec":{"network":{"egressTenants":["biology"],"privilegedPortTenants":["biology"]}}}`
	if r := e.do("operator", "PUT", "/v1/policies/net", []byte(policy)); r.status != http.StatusCreated {
		t.Fatalf("policy: %d %s", r.status, r.body)
	}
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/web", workloadYAML("biology", "web", spec)); r.status != http.StatusCreated {
		t.Errorf("with the site's consent: %d %s", r.status, r.body)
	}
	if r := e.do("geo-admin", "PUT", "/v1/tenants/geology/workloads/web", workloadYAML("geology", "web", spec)); r.status != http.StatusUnprocessableEntity {
		t.Errorf("geology, without consent: %d %s", r.status, r.body)
	}
}

// TestNodePortRangeKeepsOffTheAPI: a Topology's node-port range may not
// hold the API's port (a node port picked from it would capture the API's
// connections on every node); the default range is fine.
func TestNodePortRangeKeepsOffTheAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	var topo map[string]any
	if err := json.Unmarshal(e.get("/v1/topologies/campus"), &topo); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ports string
		want  int
	}{
		{"7000-8000", http.StatusUnprocessableEntity},
		{"7440-7440", http.StatusUnprocessableEntity},
		{"1-65535", http.StatusUnprocessableEntity},
		{"30000-32767", http.StatusOK},
		{"7441-9000", http.StatusOK},
	} {
		topo["spec"].(map[string]any)["network"] = map[string]any{"pool": "10.88.0.0/16", "nodePorts": tc.ports}
		body, _ := json.Marshal(topo)
		r := e.do("operator", "PUT", "/v1/topologies/campus", body)
		if r.status == http.StatusCreated {
			r.status = http.StatusOK
		}
		if r.status != tc.want {
			t.Errorf("nodePorts %s: %d %s, want %d", tc.ports, r.status, r.body, tc.want)
		}
		if tc.want != http.StatusOK && !strings.Contains(string(r.body), "spec.network.nodePorts") {
			t.Errorf("nodePorts %s: %s does not name the field", tc.ports, r.body)
		}
	}
}

// TestNodePortRace: two tenants applying the same node port at the same
// moment: exactly one gets it, the other a 409, every time.
func TestNodePortRace(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *server.Config) { c.Limits = server.Limits{TokenRate: 1e6, TokenBurst: 1e6} }).seed()
	for i := range 20 {
		port := itoa(31000 + i)
		var got [2]int
		done := make(chan struct{})
		for j, who := range []struct{ token, tenant string }{{"admin", "biology"}, {"geo-admin", "geology"}} {
			go func() {
				defer func() { done <- struct{}{} }()
				name := "race" + itoa(i)
				r := e.doCtx(t.Context(), who.token, "PUT", "/v1/tenants/"+who.tenant+"/workloads/"+name,
					workloadYAML(who.tenant, name, "  ports: [{port: 8080, publish: true, nodePort: "+port+"}]\n"), nil)
				got[j] = r.status
			}()
		}
		<-done
		<-done
		ok := (got[0] == http.StatusCreated) != (got[1] == http.StatusCreated)
		if !ok || got[0] != http.StatusConflict && got[1] != http.StatusConflict {
			t.Errorf("round %d, node port %s: biology %d, geology %d; want one 201 and one 409", i, port, got[0], got[1])
		}
	}
}
