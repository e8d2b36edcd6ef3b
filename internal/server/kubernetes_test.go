package server_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
)

// TestClusterTopologyRefused: with nodes read off a Kubernetes cluster, a
// Topology apply is refused naming where nodes come from (not ignored);
// tenants still apply there, and a server on its own nodes takes the
// same Topology.
func TestClusterTopologyRefused(t *testing.T) {
	topo, err := os.ReadFile("../../examples/university/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tenants, err := os.ReadFile("../../examples/university/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	biology := strings.Split(string(tenants), "\n---")[0]
	cluster := func() (v1.Topology, []string) { return v1.Topology{}, nil }
	for _, tc := range []struct {
		name    string
		edit    func(*server.Config)
		status  int
		message string
	}{
		{"kubernetes backend", func(c *server.Config) { c.Cluster = cluster }, http.StatusUnprocessableEntity, "Kubernetes cluster"},
		{"own nodes", nil, http.StatusCreated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, tc.edit)
			r := e.do("operator", http.MethodPut, "/v1/topologies/campus", topo)
			if r.status != tc.status {
				t.Fatalf("PUT topology: %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.message != "" {
				we := r.error(t)
				if we.Code != wire.CodeInvalid || !strings.Contains(we.Message, tc.message) || !strings.Contains(we.Message, "label the nodes") {
					t.Fatalf("error %+v, want invalid naming the cluster's node labels", we)
				}
				if got := e.do("operator", http.MethodGet, "/v1/topologies/campus", nil).status; got != http.StatusNotFound {
					t.Fatalf("GET refused topology: %d, want 404 (nothing stored)", got)
				}
				t.Log(we.Message)
			}
			if r := e.do("operator", http.MethodPut, "/v1/tenants/biology", []byte(biology)); r.status != http.StatusCreated {
				t.Fatalf("PUT tenant: %d %s", r.status, r.body)
			}
		})
	}
}
