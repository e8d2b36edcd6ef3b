package app

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestUpKubeNodePorts: a malformed --kube-node-ports is refused before
// rung connects to the cluster, naming the option; a good one passes that
// check (and then fails on the missing kubeconfig, as it should here).
func TestUpKubeNodePorts(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		ports, wantIn, wantOut string
	}{
		{"40000-30000", "kube node ports", ""},
		{"30000-32767", "kubeconfig", "kube node ports"},
	} {
		cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", ClientConfig: "-", Backend: BackendKubernetes,
			Kubeconfig: filepath.Join(dir, "missing"), KubeNodePorts: tc.ports}
		err := Up(t.Context(), cfg, nil, func(Info) { t.Error("ready without a cluster") })
		if err == nil || !strings.Contains(err.Error(), tc.wantIn) || tc.wantOut != "" && strings.Contains(err.Error(), tc.wantOut) {
			t.Errorf("ports %q: Up = %v, want an error naming %q", tc.ports, err, tc.wantIn)
		}
	}
}
