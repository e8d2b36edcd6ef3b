// Package kubetest starts a real kube-apiserver in-process for tests, the
// way Kubernetes' own integration tests do
// (k8s.io/kubernetes/cmd/kube-apiserver/app/testing), against a real etcd
// (Debian's etcd-server, started by etcdtest on loopback with a temp dir).
// RBAC and Pod Security admission are on, as on a production cluster.
//
// Only test binaries import this package: it pulls k8s.io/kubernetes,
// which rung's own binary must never link (see the deps test).
package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"

	"rung.dev/rung/internal/store/etcd/etcdtest"
)

// Static bearer tokens of the test users (--token-auth-file). Admin is in
// system:masters; Nobody has no binding at all.
const (
	AdminToken  = "rung-admin-token"
	NobodyToken = "rung-nobody-token"
	AdminUser   = "rung-admin"
	NobodyUser  = "rung-nobody"
)

// Cluster is a running apiserver.
type Cluster struct {
	// Loopback is the apiserver's own privileged client config.
	Loopback *rest.Config
	// Client is a clientset on Loopback (what a test uses to play kubelet
	// or an operator changing things behind rung's back).
	Client kubernetes.Interface
	host   string
	caData []byte
	dir    string
}

// Start starts etcd and a kube-apiserver with RBAC and the admission
// plugins a hardened cluster runs; both stop when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	etcd := etcdtest.Start(t, 1)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(
		AdminToken+","+AdminUser+",uid-admin,\"system:masters\"\n"+
			NobodyToken+","+NobodyUser+",uid-nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := storagebackend.NewDefaultConfig(fmt.Sprintf("/rung-kubetest-%d", os.Getpid()), nil)
	sc.Transport.ServerList = etcd.Endpoints()
	flags := []string{
		"--authorization-mode=RBAC",
		"--allow-privileged=true", // so that Pod Security admission, not this flag, refuses privileged pods
		"--token-auth-file=" + tokens,
		"--enable-admission-plugins=NamespaceLifecycle,LimitRanger,PodSecurity,NodeRestriction",
		// No kube-controller-manager runs here: the ServiceAccount plugin
		// would wait for a token controller, and ResourceQuota for the
		// quota controller to fill in status (it refuses every pod until
		// then).
		"--disable-admission-plugins=ServiceAccount,ResourceQuota",
	}
	opts := kubeapiservertesting.NewDefaultTestServerOptions()
	opts.DisableInvariantChecks = true
	srv := kubeapiservertesting.StartTestServerOrDie(t, opts, flags, sc)
	t.Cleanup(srv.TearDownFn)
	cfg := rest.CopyConfig(srv.ClientConfig)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{Loopback: cfg, Client: client, host: cfg.Host, caData: cfg.TLSClientConfig.CAData, dir: dir}
}

// Kubeconfig writes a kubeconfig file for a user's bearer token and
// returns its path; it is how rung is pointed at the cluster.
func (c *Cluster) Kubeconfig(t testing.TB, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   c.host,
		CertificateAuthorityData: c.caData,
		TLSServerName:            c.Loopback.TLSClientConfig.ServerName,
		InsecureSkipTLSVerify:    len(c.caData) == 0,
	}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "u"}
	cfg.CurrentContext = "test"
	path := filepath.Join(c.dir, "kubeconfig-"+token)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
