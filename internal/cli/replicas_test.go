package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/testio"
)

// TestReplicasAsUser is the path of a newcomer whose workload can't start:
// apply a workload whose command does not exist in the image, and see it
// failing with the runtime's reason in `get replicas` (text and JSON) and
// `describe workload`, never as running; a healthy neighbour shows
// running. Then a workload that can't be placed makes apply exit 3 with
// the reasons, and one without an image is refused, naming spec.image.
func TestReplicasAsUser(t *testing.T) {
	startUpWithAgent(t)
	dir := t.TempDir()
	manifests := applyOnOneNode(t,
		workloadDoc("shop", "broken", `["/bin/srv", "--serve"]`, "resources: {cpu: 100m, memory: 32Mi}"),
		sleeperDoc("shop", "web"))
	var replicas wire.Replicas
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, out, stderr := rungCmd(t, "get", "replicas", "--tenant", "shop", "-o", "json")
		if code != ExitOK {
			t.Fatalf("get replicas -o json: exit %d: %s", code, stderr)
		}
		replicas = wire.Replicas{}
		if err := json.Unmarshal([]byte(out), &replicas); err != nil {
			t.Fatalf("get replicas -o json: %v\n%s", err, out)
		}
		byName := map[string]wire.Replica{}
		for _, r := range replicas.Items {
			byName[r.Workload] = r
		}
		b, w := byName["shop/broken"], byName["shop/web"]
		if b.Restarts >= 1 && w.State == wire.ReplicaRunning && w.Health != wire.HealthStarting {
			if b.State != wire.ReplicaRestarting || b.Ready || b.LastError != "executable /bin/srv not found in image" {
				t.Errorf("the broken replica shows %+v", b)
			}
			if !w.Ready || w.Health != wire.HealthHealthy {
				t.Errorf("the healthy replica shows %+v (busybox's HEALTHCHECK passes)", w)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas never settled: %+v", replicas.Items)
		}
	}
	// The single machine's node is up, runs what this machine can, and
	// holds the replicas (not "unknown", "never", 0).
	code, out, _ := rungCmd(t, "get", "nodes", "-o", "wide")
	if fields := strings.Fields(lineOf(out, "n1")); code != ExitOK || len(fields) < 7 || fields[1] != "up" || fields[2] == "never" || fields[4] != "2" || fields[5] != "rung" {
		t.Errorf("get nodes -o wide: exit %d\n%s", code, out)
	}

	// The dashboard's workload page says the same, signed in as a user.
	page := dashboardPage(t, "/ui/workloads/shop/broken")
	for _, want := range []string{"restarting", "executable /bin/srv not found in image"} {
		if !strings.Contains(page, want) {
			t.Errorf("the dashboard's page of shop/broken lacks %q", want)
		}
	}
	if strings.Contains(page, ">running<") || strings.Contains(page, ">healthy<") {
		t.Errorf("the dashboard shows the broken replica as running or healthy")
	}
	code, out, _ = rungCmd(t, "get", "replicas", "shop/broken")
	if code != ExitOK || !strings.Contains(out, "restarting") || !strings.Contains(out, "executable /bin/srv not found in image") {
		t.Errorf("get replicas shop/broken: exit %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "describe", "workload", "shop/broken")
	if code != ExitOK || !strings.Contains(out, "Replicas:") || !strings.Contains(out, "replica 0 last error: executable /bin/srv not found in image") {
		t.Errorf("describe workload: exit %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "get", "replicas", "shop/web/0", "-o", "name")
	if code != ExitOK || strings.TrimSpace(out) != "replica/shop/web/0" {
		t.Errorf("get replicas -o name: exit %d %q", code, out)
	}
	if code, _, _ := rungCmd(t, "get", "replicas", "shop/web/7"); code == ExitOK {
		t.Error("a replica that does not exist was found")
	}

	// Scaling adds a replica and leaves the running one alone.
	_, out0, _ := rungCmd(t, "get", "replicas", "shop/web/0", "-o", "json")
	if code, out, stderr := rungCmd(t, "scale", "shop/web", "--replicas", "2"); code != ExitOK || !strings.Contains(out, "from 1 to 2") {
		t.Fatalf("scale: exit %d %s %s", code, out, stderr)
	}
	waitReplica(t, "shop/web/1", "running")
	var before, after wire.Replicas
	_, out1, _ := rungCmd(t, "get", "replicas", "shop/web/0", "-o", "json")
	if json.Unmarshal([]byte(out0), &before) != nil || json.Unmarshal([]byte(out1), &after) != nil || len(before.Items) != 1 || len(after.Items) != 1 ||
		!after.Items[0].StartedAt.Equal(before.Items[0].StartedAt) || after.Items[0].Restarts != 0 {
		t.Errorf("scaling touched replica 0: before %s after %s", out0, out1)
	}
	if code, _, _ := rungCmd(t, "scale", "shop/web"); code != ExitInvalid {
		t.Errorf("scale without --replicas: exit %d, want %d", code, ExitInvalid)
	}

	// 64 cores fit nowhere: apply exits 3 with the planner's reasons.
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(`apiVersion: rung.dev/v1
kind: Workload
metadata: {name: huge, tenant: shop}
spec: {image: busybox:latest, resources: {cpu: 64, memory: 32Mi}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := rungCmd(t, "apply", "-f", big)
	if code != ExitUnplaced || !strings.Contains(stderr, "shop/huge[0]") || !strings.Contains(stderr, "cpu") {
		t.Errorf("apply of an unplaceable workload: exit %d, want %d\n%s", code, ExitUnplaced, stderr)
	}
	noImage := filepath.Join(dir, "noimage.yaml")
	if err := os.WriteFile(noImage, []byte(`apiVersion: rung.dev/v1
kind: Workload
metadata: {name: blank, tenant: shop}
spec: {resources: {cpu: 100m, memory: 32Mi}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = rungCmd(t, "apply", "-f", noImage)
	if code != ExitInvalid || !strings.Contains(stderr, "spec.image") {
		t.Errorf("apply without an image: exit %d, want %d naming spec.image\n%s", code, ExitInvalid, stderr)
	}
	if code, _, stderr := rungCmd(t, "delete", "-f", big); code != ExitOK {
		t.Errorf("delete: exit %d: %s", code, stderr)
	}
	_ = manifests // deleted at the end of the test
}

// TestLogsFollowAndPrevious: a replica that prints a line every 0.3 s and
// exits after ten: `rung logs -f` shows its lines as they come and ends
// when the run ends; after the restart, --previous shows the last run,
// --tail cuts it; a replica that never started says why it has no log.
func TestLogsFollowAndPrevious(t *testing.T) {
	startUpWithAgent(t)
	applyOnOneNode(t,
		workloadDoc("shop", "ticker", `["sh", "-c", "i=0; while [ $i -lt 10 ]; do i=$((i+1)); echo tick $i; sleep 0.3; done; exit 1"]`,
			"resources: {cpu: 100m, memory: 32Mi}"),
		workloadDoc("shop", "broken", `["/bin/srv"]`, "resources: {cpu: 100m, memory: 32Mi}"))

	// Follow from the first lines of a run.
	var out, errb testio.Buffer
	done := make(chan int, 1)
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, o, _ := rungCmd(t, "logs", "shop/ticker/0"); strings.Contains(o, "tick 1\n") && !strings.Contains(o, "tick 5") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ticker never started a run")
		}
	}
	go func() { done <- runCP(t.Context(), &out, &errb, "logs", "shop/ticker/0", "-f") }()
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s := out.String(); len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if strings.Contains(out.String(), "tick 10\n") {
			break
		}
	}
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("logs -f: exit %d: %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		_, st, _ := rungCmd(t, "get", "replicas", "shop/ticker", "-o", "wide")
		t.Fatalf("logs -f did not end when the run ended; it printed %q; replicas:\n%s", out.String(), st)
	}
	if !strings.Contains(out.String(), "tick 10\n") || len(seen) < 3 {
		t.Errorf("logs -f showed %d successive outputs, ending %q; want lines arriving one after another up to tick 10", len(seen), out.String())
	}

	// After the restart the previous run is kept.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, o, _ := rungCmd(t, "logs", "shop/ticker/0", "--previous", "--tail", "2")
		if code == ExitOK && o == "tick 9\ntick 10\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs --previous --tail 2: exit %d %q, want the last two lines of the last run", code, o)
		}
	}
	if code, o, e := rungCmd(t, "logs", "shop/ticker/0", "--previous", "--since", "1h", "--timestamps", "--tail", "1"); code != ExitOK || !strings.HasSuffix(o, "Z tick 10\n") {
		t.Errorf("logs --timestamps: exit %d %q %s", code, o, e)
	}
	if code, o, e := rungCmd(t, "logs", "shop/ticker/0", "--previous", "--since", "2000-01-01T00:00:00Z", "--tail", "1"); code != ExitOK || o != "tick 10\n" {
		t.Errorf("logs --since TIME: exit %d %q %s", code, o, e)
	}
	code, _, stderr := rungCmd(t, "logs", "shop/broken/0")
	if code == ExitOK || !strings.Contains(stderr, "executable /bin/srv not found in image") {
		t.Errorf("logs of a replica that never started: exit %d, stderr %q; want why", code, stderr)
	}
}

// dashboardPage signs in to the dashboard of the `rung up` the client
// config names, with its admin token, as a browser's form does, and
// returns the page at path.
func dashboardPage(t *testing.T, path string) string {
	t.Helper()
	cfg, err := client.LoadConfig(os.Getenv(client.ConfigEnv))
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	req, _ := http.NewRequest(http.MethodPost, cfg.Server+"/ui/login", strings.NewReader(url.Values{"token": {cfg.Token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", cfg.Server)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = hc.Get(cfg.Server + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s after signing in: %d\n%s", path, resp.StatusCode, body)
	}
	return string(body)
}

// lineOf is the first line of out that starts with prefix.
func lineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// applyOnOneNode applies, to the `rung up` of the test, a topology of one
// node n1 (container and sandbox tiers), tenant shop, and the documents in
// docs; everything is deleted when the test ends. It returns the file.
func applyOnOneNode(t *testing.T, docs ...string) string {
	t.Helper()
	manifests := filepath.Join(t.TempDir(), "app.yaml")
	body := yamlDocs(append([]string{
		topologyDoc("one", "", "{name: n1, capacity: {cpu: 4, memory: 4Gi}, runtimes: [container, sandbox]}"),
		tenantDoc("shop", "shop", ""),
	}, docs...)...)
	if err := os.WriteFile(manifests, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := rungCmd(t, "apply", "-f", manifests); code != ExitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	t.Cleanup(func() { rungCmd(t, "delete", "-f", manifests) })
	return manifests
}

// waitReplica waits until `rung get replicas target` prints want.
func waitReplica(t *testing.T, target, want string) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		_, out, _ := rungCmd(t, "get", "replicas", target)
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never %s:\n%s", target, want, out)
		}
	}
}
