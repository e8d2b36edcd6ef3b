package server

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// The dashboard's pages: overview, topology, one per workload and node,
// and search. Each is built from one plan and replicaView, filtered by
// the principal exactly as the API filters them.

const (
	// uiRows bounds a long list on one page (the rest are counted, and
	// search finds them), so a large fleet keeps the page light.
	uiRows = 100
	// uiLogLines is how much of each replica's log the workload page shows.
	uiLogLines = 20
	// maxQuery bounds a search.
	maxQuery = 64
)

// pageBase is what every signed-in page's header shows.
type pageBase struct {
	Who, Generated, Title string
	// CSRF is the session's own value that the sign-out form posts back.
	CSRF     string
	Operator bool
	Refresh  int
	// Query is the search box's text.
	Query string
}

// meter is a used/total pair shown as a bar.
type meter struct {
	Used, Total int64
	Text        string
}

// Pct is the used share in whole percent (0 without a total).
func (m meter) Pct() int64 {
	if m.Total <= 0 {
		return 0
	}
	return min(100, m.Used*100/m.Total)
}

func cpuMeter(used, total int64) meter {
	return meter{Used: used, Total: total, Text: fmt.Sprintf("%s / %s cores, %s free", cores(used), cores(total), cores(max(0, total-used)))}
}

func memMeter(used, total int64) meter {
	return meter{Used: used, Total: total, Text: fmt.Sprintf("%s / %s, %s free", bytesIEC(used), bytesIEC(total), bytesIEC(max(0, total-used)))}
}

// usageNow sums what the nodes last reported the replicas use ("" when
// none reported any).
func usageNow(rs []wire.Replica) string {
	var cpu, mem int64
	n := 0
	for _, r := range rs {
		if r.Usage != nil {
			n++
			cpu, mem = cpu+r.Usage.MilliCPU, mem+r.Usage.Memory
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%s cores, %s in use now (%d replica(s) reporting)", cores(cpu), bytesIEC(mem), n)
}

func cores(milli int64) string {
	if milli%1000 == 0 {
		return fmt.Sprint(milli / 1000)
	}
	return fmt.Sprintf("%.1f", float64(milli)/1000)
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

var uiFuncs = map[string]any{
	"cores":       cores,
	"bytes":       bytesIEC,
	"workloadURL": workloadURL,
	"rackLink":    rackLink,
	"nodeURL":     func(n string) string { return "/ui/nodes/" + url.PathEscape(n) },
	"pct":         func(f float64) float64 { return f * 100 },
	"noisySteps": func(rs []replicaRow) bool {
		for _, r := range rs {
			if len(r.Noisy) > 0 {
				return true
			}
		}
		return false
	},
}

// workloadURL links TENANT/NAME to its page.
func workloadURL(ref string) string {
	t, n, _ := strings.Cut(ref, "/")
	return "/ui/workloads/" + url.PathEscape(t) + "/" + url.PathEscape(n)
}

func (s *Server) render(w http.ResponseWriter, status int, name string, model any) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	return dashboardTmpl.ExecuteTemplate(w, name, model)
}

// errorPage is a page that can't be shown (missing, or not the
// principal's to see: both read the same, as the API's 404 does).
type errorPage struct {
	pageBase
	Message string
}

func (s *Server) notFoundPage(w http.ResponseWriter, base pageBase, msg string) error {
	base.Title, base.Refresh = "Not found", 0
	return s.render(w, http.StatusNotFound, "error", errorPage{pageBase: base, Message: msg})
}

// view is one consistent look at the fleet for a principal.
type view struct {
	p        auth.Principal
	pl       plan
	res      *scheduler.Result // redacted for a tenant role
	replicas []wire.Replica
	// workloads and tenants the principal may see, by TENANT/NAME and name.
	workloads []v1.Workload
	tenants   []string
	// requests are each workload's resources per replica (milli-CPU,
	// bytes).
	requests map[string][2]int64
}

func (s *Server) look(ctx context.Context) (*view, error) {
	p := principal(ctx)
	pl, err := s.planner.current(ctx)
	if err != nil {
		return nil, err
	}
	reps, err := s.replicaView(ctx, p)
	if err != nil {
		return nil, err
	}
	v := &view{p: p, pl: pl, res: pl.result, replicas: reps, requests: map[string][2]int64{}}
	if p.Role != auth.Operator {
		v.res = tenantView(pl.result, p.Tenant, pl.tenants)
	}
	for _, t := range pl.set.Tenants {
		if v.sees(t.Metadata.Name) {
			v.tenants = append(v.tenants, t.Metadata.Name)
		}
	}
	for _, w := range pl.set.Workloads {
		ref := w.Metadata.Tenant + "/" + w.Metadata.Name
		var r [2]int64
		if q := w.Spec.Resources.CPU; q != nil {
			r[0] = q.MilliValue()
		}
		if q := w.Spec.Resources.Memory; q != nil {
			r[1] = q.Value()
		}
		v.requests[ref] = r
		if v.sees(w.Metadata.Tenant) {
			v.workloads = append(v.workloads, w)
		}
	}
	slices.Sort(v.tenants)
	slices.SortFunc(v.workloads, func(a, b v1.Workload) int {
		return cmp.Or(strings.Compare(a.Metadata.Tenant, b.Metadata.Tenant), strings.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	return v, nil
}

func (v *view) sees(tenant string) bool { return v.p.Role == auth.Operator || tenant == v.p.Tenant }

// used sums the requests of the plan's replicas on each node and each
// physical host (a host counts its VMs' replicas too).
func (v *view) used() (byNode, byHost map[string][2]int64) {
	byNode, byHost = map[string][2]int64{}, map[string][2]int64{}
	for _, p := range v.pl.result.Placements {
		r := v.requests[p.Workload]
		n, h := byNode[p.Node], byHost[cmp.Or(p.Host, p.Node)]
		byNode[p.Node] = [2]int64{n[0] + r[0], n[1] + r[1]}
		byHost[cmp.Or(p.Host, p.Node)] = [2]int64{h[0] + r[0], h[1] + r[1]}
	}
	return byNode, byHost
}

func capacityOf(n v1.Node) (cpu, mem int64) {
	if q := n.Capacity.CPU; q != nil {
		cpu = q.MilliValue()
	}
	if q := n.Capacity.Memory; q != nil {
		mem = q.Value()
	}
	return cpu, mem
}

// countRow is a name and a number.
type countRow struct {
	Name  string
	Count int
}

type workloadRow struct {
	Ref                        string
	Desired, Placed, Ready     int
	States, Tiers              []countRow
	Unplaced                   int
	RestartPolicy, MinIsolated string
}

type domainRow struct {
	Name     string
	Nodes    int
	CPU, Mem meter
}

type levelRow struct {
	Level   string
	Domains []domainRow
	More    int
}

// overview is the model of /.
type overview struct {
	pageBase
	Tenants                      []countRow
	Workloads                    []workloadRow
	MoreWorkloads                int
	Replicas                     int
	States, Tiers                []countRow
	Unplaced                     int
	NodesUp, NodesDown, NodesUnk int
	Levels                       []levelRow
	Problems                     []string
	Events                       []wire.Event
}

func countsOf(m map[string]int, order []string) []countRow {
	var out []countRow
	for _, k := range order {
		if m[k] > 0 {
			out = append(out, countRow{k, m[k]})
		}
	}
	return out
}

var tierOrder = func() []string {
	var out []string
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		out = append(out, t.String())
	}
	return out
}()

func (v *view) workloadRows() []workloadRow {
	byRef := map[string]*workloadRow{}
	states, tiers := map[string]map[string]int{}, map[string]map[string]int{}
	var rows []workloadRow
	for _, w := range v.workloads {
		rows = append(rows, workloadRow{Ref: w.Metadata.Tenant + "/" + w.Metadata.Name, Desired: 1,
			RestartPolicy: string(cmp.Or(w.Spec.RestartPolicy, v1.RestartAlways)), MinIsolated: string(cmp.Or(w.Spec.Isolation.Minimum, "-"))})
		if w.Spec.Replicas != nil {
			rows[len(rows)-1].Desired = *w.Spec.Replicas
		}
	}
	for i := range rows {
		byRef[rows[i].Ref] = &rows[i]
		states[rows[i].Ref], tiers[rows[i].Ref] = map[string]int{}, map[string]int{}
	}
	for _, r := range v.replicas {
		row := byRef[r.Workload]
		if row == nil {
			continue
		}
		if r.Node != "" {
			row.Placed++
			tiers[r.Workload][r.Tier]++
		} else {
			row.Unplaced++
		}
		if r.Ready {
			row.Ready++
		}
		states[r.Workload][r.State]++
	}
	for i := range rows {
		rows[i].States = countsOf(states[rows[i].Ref], wire.ReplicaStates)
		rows[i].Tiers = countsOf(tiers[rows[i].Ref], tierOrder)
	}
	return rows
}

func (s *Server) overviewPage(ctx context.Context, w http.ResponseWriter, r *http.Request, base pageBase) error {
	v, err := s.look(ctx)
	if err != nil {
		return err
	}
	base.Title = "Overview"
	m := overview{pageBase: base, Replicas: len(v.replicas)}
	perTenant := map[string]int{}
	for _, w := range v.workloads {
		perTenant[w.Metadata.Tenant]++
	}
	for _, t := range v.tenants {
		m.Tenants = append(m.Tenants, countRow{t, perTenant[t]})
	}
	rows := v.workloadRows()
	if len(rows) > uiRows {
		m.MoreWorkloads = len(rows) - uiRows
		rows = rows[:uiRows]
	}
	m.Workloads = rows
	states, tiers := map[string]int{}, map[string]int{}
	for _, rep := range v.replicas {
		states[rep.State]++
		if rep.Node != "" {
			tiers[rep.Tier]++
		} else {
			m.Unplaced++
		}
	}
	m.States, m.Tiers = countsOf(states, wire.ReplicaStates), countsOf(tiers, tierOrder)
	if v.p.Role == auth.Operator {
		m.Problems = v.res.Problems
		for _, st := range s.nodes.status(topologyNodes(v.pl.set)) {
			switch st.State {
			case wire.NodeUp:
				m.NodesUp++
			case wire.NodeDown:
				m.NodesDown++
			default:
				m.NodesUnk++
			}
		}
		m.Levels = v.levels()
	}
	if evs, err := s.tailEvents(ctx, dashboardEvents, visibleTo(v.p)); err == nil {
		m.Events = evs.Events
		slices.Reverse(m.Events) // newest first
	}
	return s.render(w, http.StatusOK, "overview", m)
}

// levels sums capacity and the plan's requests by failure domain, for
// each level of the topologies (physical hosts only: a VM's capacity is
// carved from its host's).
func (v *view) levels() []levelRow {
	_, byHost := v.used()
	type agg struct {
		nodes          int
		cpu, mem, u, m int64
	}
	sums := map[string]map[string]*agg{}
	var order []string
	for _, t := range v.pl.set.Topologies {
		levels := t.Spec.Levels
		if len(levels) == 0 {
			levels = []string{"datacenter", "rack"}
		}
		for _, n := range t.Spec.Nodes {
			if n.Host != "" {
				continue
			}
			cpu, mem := capacityOf(n)
			u := byHost[n.Name]
			for _, l := range levels {
				d, ok := n.Domains[l]
				if !ok {
					continue
				}
				if sums[l] == nil {
					sums[l] = map[string]*agg{}
					order = append(order, l)
				}
				a := sums[l][d]
				if a == nil {
					a = &agg{}
					sums[l][d] = a
				}
				a.nodes++
				a.cpu, a.mem, a.u, a.m = a.cpu+cpu, a.mem+mem, a.u+u[0], a.m+u[1]
			}
		}
	}
	var out []levelRow
	for _, l := range order {
		row := levelRow{Level: l}
		for _, d := range slices.Sorted(maps.Keys(sums[l])) {
			if len(row.Domains) == uiRows/4 {
				row.More++
				continue
			}
			a := sums[l][d]
			row.Domains = append(row.Domains, domainRow{Name: d, Nodes: a.nodes, CPU: cpuMeter(a.u, a.cpu), Mem: memMeter(a.m, a.mem)})
		}
		out = append(out, row)
	}
	return out
}

// workloadPage is the model of /ui/workloads/TENANT/NAME.
type workloadPage struct {
	pageBase
	Ref      string
	Spec     v1.WorkloadSpec
	Row      workloadRow
	Replicas []replicaRow
	Events   []wire.Event
	// Residency and the volumes it mounts (dashboard_volumes.go).
	Residency workloadResidency
}

// replicaRow is one replica with why its tier and its log's tail.
type replicaRow struct {
	wire.Replica
	Why   string
	Logs  []string
	Trunc bool
}

func (s *Server) workloadPage(ctx context.Context, w http.ResponseWriter, r *http.Request, base pageBase) error {
	tenant, name := r.PathValue("tenant"), r.PathValue("name")
	// The same words whether it is missing or another tenant's, naming
	// nothing back.
	const missing = "no such workload, or not one you may see"
	if !v1.IsDNSLabel(tenant) || !v1.IsDNSLabel(name) {
		return s.notFoundPage(w, base, missing)
	}
	v, err := s.look(ctx)
	if err != nil {
		return err
	}
	ref := tenant + "/" + name
	i := slices.IndexFunc(v.workloads, func(w v1.Workload) bool { return w.Metadata.Tenant == tenant && w.Metadata.Name == name })
	if i < 0 {
		return s.notFoundPage(w, base, missing)
	}
	base.Title = ref
	m := workloadPage{pageBase: base, Ref: ref, Spec: v.workloads[i].Spec, Residency: v.residencyOf(&v.workloads[i])}
	for _, row := range v.workloadRows() {
		if row.Ref == ref {
			m.Row = row
		}
	}
	why := map[int]string{}
	for _, p := range v.res.Placements {
		if p.Workload == ref {
			why[p.Replica] = p.Reason
		}
	}
	for _, u := range v.res.Unplaced {
		if u.Workload == ref {
			why[u.Replica] = "not placed: " + strings.Join(u.Reasons, "; ")
		}
	}
	logs, err := s.replicaLogs(ctx, tenant, name, -1, uiLogLines)
	if err != nil {
		return err
	}
	byOrd := map[int]wire.ReplicaLines{}
	for _, l := range logs.Replicas {
		byOrd[l.Replica] = l
	}
	for _, rep := range v.replicas {
		if rep.Workload == ref {
			m.Replicas = append(m.Replicas, replicaRow{Replica: rep, Why: why[rep.Index], Logs: byOrd[rep.Index].Lines, Trunc: byOrd[rep.Index].Truncated})
		}
	}
	slices.SortFunc(m.Replicas, func(a, b replicaRow) int { return a.Index - b.Index })
	obj := "Workload " + ref
	if evs, err := s.tailEvents(ctx, dashboardEvents, func(e wire.Event) bool { return e.Object() == obj && visibleTo(v.p)(e) }); err == nil {
		m.Events = evs.Events
		slices.Reverse(m.Events)
	}
	return s.render(w, http.StatusOK, "workload", m)
}

// searchPage is the model of /ui/search?q=.
type searchPage struct {
	pageBase
	Tenants, Workloads, Nodes []string
	Replicas                  []wire.Replica
	More                      int
}

func (s *Server) searchPage(ctx context.Context, w http.ResponseWriter, r *http.Request, base pageBase) error {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	if len(q) > maxQuery || !utf8.ValidString(q) {
		q = ""
	}
	v, err := s.look(ctx)
	if err != nil {
		return err
	}
	base.Title, base.Query, base.Refresh = "Search", q, 0
	m := searchPage{pageBase: base}
	if q == "" {
		return s.render(w, http.StatusOK, "search", m)
	}
	add := func(list *[]string, name string) {
		if !strings.Contains(strings.ToLower(name), q) {
			return
		}
		if len(*list) == uiRows {
			m.More++
			return
		}
		*list = append(*list, name)
	}
	for _, t := range v.tenants {
		add(&m.Tenants, t)
	}
	for _, w := range v.workloads {
		add(&m.Workloads, w.Metadata.Tenant+"/"+w.Metadata.Name)
	}
	if base.Operator {
		for _, t := range v.pl.set.Topologies {
			for _, n := range t.Spec.Nodes {
				add(&m.Nodes, n.Name)
			}
		}
	}
	for _, rep := range v.replicas {
		if strings.Contains(rep.ID, q) {
			if len(m.Replicas) == uiRows {
				m.More++
				continue
			}
			m.Replicas = append(m.Replicas, rep)
		}
	}
	return s.render(w, http.StatusOK, "search", m)
}
