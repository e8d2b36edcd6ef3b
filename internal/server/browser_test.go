package server_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler/gen"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
)

// chromiumPath is Debian's chromium (apt package chromium); the test never
// downloads a browser.
const chromiumPath = "/usr/bin/chromium"

// updateScreenshots writes the browser test's screenshots to
// docs/screenshots/ for the README: go test ./internal/server -run
// TestBrowser -update-screenshots.
var updateScreenshots = flag.Bool("update-screenshots", false, "write the dashboard screenshots to docs/screenshots/")

// newChromium starts a headless Debian chromium with a fresh profile and
// returns a tab's context.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("browser test: %s not installed (apt-get install chromium)", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		// rung.test is this machine under a name that is not "potentially
		// trustworthy" (as a LAN address over plain HTTP is not): the
		// browser then sends no Sec-Fetch-Site, only Origin.
		chromedp.Flag("host-resolver-rules", "MAP rung.test 127.0.0.1"),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// tab drives one browser tab through the dashboard.
type tab struct {
	t        *testing.T
	ctx      context.Context
	shots    string // where screenshots go
	docShots string // docs/screenshots/ with -update-screenshots, else ""
}

func newTab(t *testing.T) *tab {
	dir := os.Getenv("RUNG_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tb := &tab{t: t, ctx: newChromium(t), shots: dir}
	if *updateScreenshots {
		tb.docShots = filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(tb.docShots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return tb
}

func (b *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// text is the visible text of the page.
func (b *tab) text() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(`body`)))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

func (b *tab) location() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// shot saves a full-page PNG as NAME.png (and in docs/screenshots/ when
// asked to).
func (b *tab) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	for _, dir := range []string{b.shots, b.docShots} {
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// wants fails unless the page's text holds each of want.
func (b *tab) wants(page string, want ...string) {
	b.t.Helper()
	txt := b.text()
	for _, w := range want {
		if !strings.Contains(txt, w) {
			b.t.Errorf("%s lacks %q:\n%s", page, w, txt)
		}
	}
}

// click follows a link or presses a button and waits for the next page.
func (b *tab) click(sel string) {
	b.t.Helper()
	// A generous bound, so a click that navigates nowhere fails instead of
	// hanging; no timing is checked.
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("click %s: %v", sel, err)
	}
}

func (b *tab) signIn(base, token string) {
	b.t.Helper()
	b.do(chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), token))
	b.click(`form[action="/ui/login"] button`)
	if txt := b.text(); !strings.Contains(txt, "Sign out") {
		b.t.Fatalf("signed in, the page shows:\n%s", txt)
	}
}

// TestBrowserDashboard walks the dashboard in a real Chromium as people
// would, with the page's own security headers: sign in, the overview, the
// topology map, a node, a workload (reached by links), search, sign out;
// then another tenant signs in and sees nothing of the first.
func TestBrowserDashboard(t *testing.T) {
	// The nodes report once, before the browser starts; on a loaded
	// machine the pages come long after the default 10 s node timeout.
	e := newEnvWith(t, func(c *server.Config) { c.NodeTimeout = time.Hour }).seed()
	// What rung up's own agent hands over: the end of a replica's log.
	e.srv.PublishLogs("", []wire.ReplicaLog{{ID: "biology-sequencer-0", Tenant: "biology", Data: "reading chunk 41 of 120\nreading chunk 42 of 120\n"}})
	applyVolumes(t, e)
	reportNodes(t, e)
	b := newTab(t)

	b.signIn(e.url, e.tokens["operator"])
	b.wants("overview", "Tenants", "Workloads", "biology/sequencer", "geology", "Capacity by failure domain", "Recent events")
	b.shot("overview")

	b.click(`nav a[href="/ui/topology"]`)
	b.wants("topology", "rack", "runs ")
	b.shot("topology")

	// A host's link opens its node page.
	b.click(`.host .hosthead a`)
	if !strings.Contains(b.location(), "/ui/nodes/") {
		t.Fatalf("the host link went to %s", b.location())
	}
	b.wants("node page", "Node ", "Capacity", "runtimes offered", "Replicas")
	b.shot("node")

	// A replica's link opens its workload's page.
	b.do(chromedp.Navigate(e.url + "/ui/topology"))
	b.click(`.replicas li a[href="/ui/workloads/biology/sequencer"]`)
	b.wants("workload page", "Workload biology/sequencer", "Replicas", "Why this tier", "rule 3 (same tenant)", "Logs", "biology-sequencer-0", "reading chunk 42 of 120",
		"running", "healthy", "restarting", "executable /bin/seq not found in image", "0.2 cores")
	b.shot("workload")

	// The volumes page: each tenant's volumes, their binding, who mounts
	// them, and the tenant's residency.
	b.click(`nav a[href="/ui/volumes"]`)
	b.wants("volumes page", "Volumes", "Tenant biology", "Tenant geology", "seqdata-0", "seqdata-1", "of seqdata", "5Gi", "confidential",
		"biology-archive-0", "biology-archive-1", "at /data", "cores", "not bound yet", "no workload mounts it", "residency: anywhere")
	rows := b.rows(`table.volumes-table tbody tr`)
	for _, inst := range []string{"seqdata-0", "seqdata-1"} {
		i := slices.IndexFunc(rows, func(r string) bool { return strings.HasPrefix(r, inst) })
		// rack r2 is h3 and h4: the workload's residency holds its volumes.
		if i < 0 || !strings.Contains(rows[i], "biology-archive-"+inst[len(inst)-1:]) || !strings.Contains(rows[i], "h3") && !strings.Contains(rows[i], "h4") {
			t.Errorf("volume %s's row, want bound to h3 or h4 and used by its replica: %q", inst, rows)
		}
	}
	b.shot("volumes")
	b.click(`a[href="/ui/workloads/biology/archive"]`)
	b.wants("archive's page", "Workload biology/archive", "residency", "rack in [r2]", "narrowed by the workload", "seqdata (one per replica) at /data")

	// Search by name, then follow the hit.
	b.do(chromedp.SendKeys(chromedp.CSS(`input[name=q]`), "sequen"))
	b.click(`form.search button`)
	b.wants("search", "Search for “sequen”", "biology/sequencer")
	b.shot("search")
	b.click(`main li a[href="/ui/workloads/biology/sequencer"]`)
	b.wants("workload page from search", "Workload biology/sequencer")

	b.click(`form[action="/ui/logout"] button`)
	b.wants("signed out", "Sign in")
	b.shot("signin")
	b.do(chromedp.Navigate(e.url + "/ui/topology"))
	if txt := b.text(); strings.Contains(txt, "rack") || !strings.Contains(txt, "Sign in") {
		t.Errorf("after sign-out /ui/topology shows:\n%s", txt)
	}

	// geology's admin sees geology and nothing of biology, on any page.
	b.signIn(e.url, e.tokens["geo-admin"])
	b.wants("geology's overview", "geology/")
	b.do(chromedp.Navigate(e.url + "/ui/volumes"))
	b.wants("geology's volumes", "Tenant geology", "cores", "2Gi")
	b.shot("tenant-volumes")
	for _, path := range []string{"/", "/ui/topology", "/ui/workloads/biology/sequencer", "/ui/search?q=bio", "/ui/search?q=seq", "/ui/volumes", "/ui/workloads/biology/archive"} {
		b.do(chromedp.Navigate(e.url + path))
		txt := b.text()
		if strings.Contains(txt, "biology") || strings.Contains(txt, "sequencer") && path != "/ui/search?q=seq" {
			t.Errorf("geology sees biology at %s:\n%s", path, txt)
		}
		if path == "/ui/search?q=seq" && !strings.Contains(txt, "Nothing matches") {
			t.Errorf("geology's search for seq:\n%s", txt)
		}
	}
	b.do(chromedp.Navigate(e.url + "/"))
	b.shot("tenant-overview")
	b.click(`form[action="/ui/logout"] button`)
	b.wants("signed out", "Sign in")

	// Where the browser sends no Sec-Fetch-Site (plain HTTP to a name
	// that isn't localhost), the Origin check still lets the page's own
	// forms through.
	lan := strings.Replace(e.url, "127.0.0.1", "rung.test", 1)
	b.signIn(lan, e.tokens["viewer"])
	b.click(`form[action="/ui/logout"] button`)
	b.wants("signed out on rung.test", "Sign in")
}

// rows is the visible text of each element sel matches.
func (b *tab) rows(sel string) []string {
	b.t.Helper()
	out, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll(`+strconv.Quote(sel)+`)].map(e => e.innerText)`))
	if err != nil {
		b.t.Fatal(err)
	}
	return out
}

// applyVolumes gives biology a perReplica volume that a workload of two
// replicas held to rack r2 mounts, and geology a volume nothing mounts.
func applyVolumes(t *testing.T, e *env) {
	t.Helper()
	for _, a := range []struct{ who, path, yaml string }{
		{"admin", "/v1/tenants/biology/volumes/seqdata", "apiVersion: rung.dev/v1\nkind: Volume\nmetadata: {name: seqdata, tenant: biology}\nspec: {size: 5Gi, dataClass: confidential}\n"},
		{"admin", "/v1/tenants/biology/workloads/archive", `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: archive, tenant: biology}
spec:
  image: busybox:latest
  replicas: 2
  resources: {cpu: 100m, memory: 64Mi}
  placement: {domains: {rack: [r2]}}
  volumes: [{name: seqdata, mountPath: /data, perReplica: true}]
`},
		{"geo-admin", "/v1/tenants/geology/volumes/cores", "apiVersion: rung.dev/v1\nkind: Volume\nmetadata: {name: cores, tenant: geology}\nspec: {size: 2Gi}\n"},
	} {
		if r := e.do(a.who, "PUT", a.path, []byte(a.yaml)); r.status != http.StatusCreated {
			t.Fatalf("apply %s: %d %s", a.path, r.status, r.body)
		}
	}
}

// reportNodes sends, for each node with replicas of biology, the
// heartbeat its agent would: biology/sequencer's replica 0 running and
// healthy with its usage, replica 1 restarting after a failure,
// biology/notebook running.
func reportNodes(t *testing.T, e *env) {
	t.Helper()
	res, err := e.client("operator").Plan(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	code := 127
	status := map[string]wire.ReplicaStatus{
		"biology-sequencer-0": {State: wire.ReplicaRunning, Health: wire.HealthHealthy, StartedAt: time.Now().Add(-time.Hour),
			Usage: &wire.Usage{MilliCPU: 230, Memory: 48 << 20, PIDs: 3}},
		"biology-sequencer-1": {State: wire.ReplicaRestarting, Restarts: 3, ExitCode: &code, LastError: "executable /bin/seq not found in image", Health: wire.HealthNone},
		"biology-notebook-0":  {State: wire.ReplicaRunning, Health: wire.HealthNone, Usage: &wire.Usage{MilliCPU: 15, Memory: 12 << 20, PIDs: 1}},
	}
	byNode := map[string][]wire.ReplicaState{}
	for _, p := range res.Placements {
		id := strings.ReplaceAll(p.Workload, "/", "-") + fmt.Sprintf("-%d", p.Replica)
		if st, ok := status[id]; ok {
			run := "running"
			if st.State != wire.ReplicaRunning {
				run = "missing"
			}
			byNode[p.Node] = append(byNode[p.Node], wire.ReplicaState{ID: id, Tenant: "biology", Tier: p.Tier, Status: run, ReplicaStatus: st})
		}
	}
	for node, reps := range byNode {
		if err := e.agentClient(node).Heartbeat(t.Context(), node, wire.Heartbeat{Runtimes: []string{"container", "sandbox"}, Replicas: reps}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBrowserOverviewLarge measures, in the browser, how long the
// overview of 5,000 nodes and 10,000 replicas takes to load and how much
// it weighs (measured, not asserted: the README reports it).
func TestBrowserOverviewLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("plans 10,000 replicas")
	}
	e := newEnv(t)
	set := gen.Cluster(5000, 10000, 50, 1)
	// One Topology object of 5,000 nodes exceeds the API's body limit:
	// apply it as ten.
	top := set.Topologies[0]
	set.Topologies = nil
	for i := 0; i < len(top.Spec.Nodes); i += 500 {
		part := top
		part.Metadata.Name = fmt.Sprintf("%s-%d", top.Metadata.Name, i/500)
		part.Spec.Nodes = top.Spec.Nodes[i:min(i+500, len(top.Spec.Nodes))]
		set.Topologies = append(set.Topologies, part)
	}
	set.Policies = append(set.Policies, v1.Policy{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindPolicy}, Metadata: v1.ObjectMeta{Name: "site"}})
	// The nodes go last: until then each apply's re-plan has no node to
	// try, so applying 1,500 workloads stays quick.
	nodes := &v1.Set{Topologies: set.Topologies}
	set.Topologies = nil
	start := time.Now()
	for _, s := range []*v1.Set{set, nodes} {
		if _, err := e.client("operator").ApplySet(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("applied %d workloads and %d nodes in %v", len(set.Workloads), 5000, time.Since(start).Round(time.Millisecond))
	res, err := e.client("operator").Plan(t.Context()) // plan once, outside the measurement
	if err != nil {
		t.Fatal(err)
	}
	b := newTab(t)
	b.docShots = "" // an artifact only: too large for the README
	b.signIn(e.url, e.tokens["operator"])
	// measure loads path three times and keeps the fastest, by the
	// browser's own Navigation Timing.
	measure := func(path string) navTiming {
		var best navTiming
		for i := range 3 {
			b.do(chromedp.Navigate(e.url + path))
			tm, err := chromedp.Run(b.ctx, chromedp.Evaluate[navTiming](`(() => { const n = performance.getEntriesByType("navigation")[0];
				return {Load: n.loadEventEnd - n.startTime, Response: n.responseEnd - n.startTime, Transfer: n.transferSize, Body: n.decodedBodySize}; })()`))
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 || tm.Load < best.Load {
				best = tm
			}
		}
		return best
	}
	over := measure("/")
	if !strings.Contains(b.text(), "Capacity by failure domain") {
		t.Fatalf("the large overview did not render:\n%.2000s", b.text())
	}
	b.shot("overview-large")
	t.Logf("overview of %d nodes, %d replicas placed (%d unplaced): %s", 5000, len(res.Placements), len(res.Unplaced), over)
	// The topology of 5,000 hosts is one row per rack, each opening its
	// rack's map.
	t.Logf("topology summary of the same: %s", measure("/ui/topology"))
	if txt := b.text(); !strings.Contains(txt, "one row per rack") || !strings.Contains(txt, "rack ") {
		t.Fatalf("the large topology is no summary:\n%.2000s", txt)
	}
	b.shot("topology-large")
	b.click(`table.racks a[href*="rack="]`)
	if txt := b.text(); !strings.Contains(txt, "All datacenters") || strings.Contains(txt, "one row per rack") || !strings.Contains(txt, "runs ") {
		t.Fatalf("a rack of the large topology:\n%.2000s", txt)
	}
	t.Logf("one rack's map: %s", measure(strings.TrimPrefix(b.location(), e.url)))
}

// navTiming is what the browser measured of one page load.
type navTiming struct {
	Load, Response, Transfer, Body float64
}

func (n navTiming) String() string {
	return fmt.Sprintf("loaded in %.0f ms (response %.0f ms), page %.1f KiB (%.0f KiB over the wire), best of 3, %s",
		n.Load, n.Response, n.Body/1024, n.Transfer/1024, time.Now().UTC().Format(time.DateTime))
}
