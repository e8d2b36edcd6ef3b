package v1

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ErrInvalid is matched, through errors.Is, by every *FieldError.
var ErrInvalid = errors.New("invalid manifest")

// FieldError is one problem in a manifest: where it is, what is wrong and
// how to fix it.
type FieldError struct {
	File  string // path as given by the user; empty if not read from a file
	Doc   int    // 1-based document index in File; 0 if unknown
	Line  int    // 1-based line; 0 if unknown
	Kind  string // kind of the object, e.g. "Topology"; empty if unknown
	Name  string // name of the object; TENANT/NAME for a Workload
	Field string // field path, e.g. "spec.nodes[3].host"
	Msg   string // what is wrong
	Fix   string // how to fix it
}

// Error formats the error as
// "FILE:LINE: KIND NAME: FIELD: MSG (fix: FIX)", leaving out what is unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "" && e.Doc > 0:
		fmt.Fprintf(&b, "%s: document %d: ", e.File, e.Doc)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Kind != "" {
		b.WriteString(e.Kind)
		if e.Name != "" {
			b.WriteString(" " + e.Name)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString(" (fix: " + e.Fix + ")")
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Bounds checked by Validate.
const (
	// MaxReplicas is the most replicas of one workload.
	MaxReplicas = 10000
	// MaxSpreadDomains bounds a spread's minDomains and maxPerDomain.
	MaxSpreadDomains = 10000
)

// Levels returns the failure-domain levels known to the set: the built-in
// nested and orthogonal levels, then every Topology's spec.levels in order,
// without repeats. Operator-added levels are orthogonal.
func (s *Set) Levels() []string {
	out := slices.Concat(NestedLevels, OrthogonalLevels)
	seen := map[string]bool{}
	for _, l := range out {
		seen[l] = true
	}
	for _, t := range s.Topologies {
		for _, l := range t.Spec.Levels {
			if l != "" && !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	return out
}

// Validate checks every object and the references between them. It reports
// every problem it finds, as an errors.Join of *FieldError in file and line
// order, or returns nil. It does not modify the set.
func (s *Set) Validate() error {
	return joinFieldErrors(s.validate(brokenRefs{}))
}

func joinFieldErrors(fes []*FieldError) error {
	if len(fes) == 0 {
		return nil
	}
	fes = capFieldErrors(fes)
	errs := make([]error, len(fes))
	for i, e := range fes {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// capFieldErrors keeps the first maxErrors errors and says how many more
// there were: a hostile manifest of 100,000 bad ports would otherwise
// turn one small request into megabytes of answer and audit.
func capFieldErrors(fes []*FieldError) []*FieldError {
	if len(fes) <= maxErrors+1 {
		return fes
	}
	more := &FieldError{File: fes[maxErrors].File, Msg: fmt.Sprintf("%d more errors not shown", len(fes)-maxErrors),
		Fix: "fix the errors above and run again"}
	return append(fes[:maxErrors:maxErrors], more)
}

// sortFieldErrors orders errors by file and line, keeping the order of
// errors at one line.
func sortFieldErrors(fes []*FieldError) {
	slices.SortStableFunc(fes, func(a, b *FieldError) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
}

// object is an object being validated: its kind, its name for messages and
// its Origins key.
type object struct {
	kind, name, key string
}

type validator struct {
	s      *Set
	broken brokenRefs
	levels []string
	known  map[string]bool // every level name
	errs   []*FieldError
}

// where the first of two duplicates was defined.
type definedAt struct {
	o    object
	path string
}

// nodeAt is a node with where it was defined.
type nodeAt struct {
	o    object
	path string
	n    *Node
}

func (s *Set) validate(broken brokenRefs) []*FieldError {
	v := &validator{s: s, broken: broken, levels: s.Levels(), known: map[string]bool{}}
	for _, l := range v.levels {
		v.known[l] = true
	}
	topos, tenants, workloads, policies := s.objects()

	tenantAt := map[string]definedAt{}
	for i := range s.Tenants {
		t, o := &s.Tenants[i], tenants[i]
		if v.meta(o, t.Metadata, "biology") {
			v.unique(tenantAt, t.Metadata.Name, o, "metadata.name", "Tenant "+strconv.Quote(t.Metadata.Name))
		}
		v.tenant(o, &t.Spec)
		v.placement(o, t.Spec.Placement)
	}
	v.topologies(topos, tenantAt)
	workloadAt := map[string]definedAt{}
	for i := range s.Workloads {
		w, o := &s.Workloads[i], workloads[i]
		okName := v.meta(o, w.Metadata, "sequencer")
		okTenant := v.workloadTenant(o, w.Metadata.Tenant, tenantAt)
		if okName && okTenant {
			id := w.Metadata.Tenant + "/" + w.Metadata.Name
			v.unique(workloadAt, id, o, "metadata.name", "Workload "+strconv.Quote(id))
		}
		v.workload(o, &w.Spec)
		v.workloadVolumes(o, &w.Spec)
		v.placement(o, w.Spec.Placement)
		for _, t := range s.Tenants {
			if t.Metadata.Name == w.Metadata.Tenant {
				v.narrower(o, w.Spec.Placement, t.Metadata.Name, t.Spec.Placement)
			}
		}
	}
	v.sharedVolumes(workloads)
	policyAt := map[string]definedAt{}
	ruleAt := map[string]definedAt{}
	admissionAt := map[string]definedAt{}
	for i := range s.Policies {
		p, o := &s.Policies[i], policies[i]
		if v.meta(o, p.Metadata, "site") {
			v.unique(policyAt, p.Metadata.Name, o, "metadata.name", "Policy "+strconv.Quote(p.Metadata.Name))
		}
		v.policy(o, &p.Spec, ruleAt)
		v.admission(o, &p.Spec.Admission, admissionAt)
	}
	v.networks(topos, workloads)
	secretAt := map[string]definedAt{}
	seen := map[string]int{}
	for i := range s.Secrets {
		sec := &s.Secrets[i]
		key := objectKey(KindSecret, sec.Metadata.Tenant, sec.Metadata.Name)
		seen[key]++
		o := object{kind: KindSecret, name: displayName(sec.Metadata.Tenant + "/" + sec.Metadata.Name), key: nthKey(key, seen[key])}
		v.secret(o, sec)
		v.unique(secretAt, sec.Metadata.Tenant+"/"+sec.Metadata.Name, o, "metadata.name", "Secret "+strconv.Quote(sec.Metadata.Tenant+"/"+sec.Metadata.Name))
	}
	volumeAt := map[string]definedAt{}
	for i := range s.Volumes {
		vol := &s.Volumes[i]
		id := vol.Metadata.Tenant + "/" + vol.Metadata.Name
		key := objectKey(KindVolume, vol.Metadata.Tenant, vol.Metadata.Name)
		seen[key]++
		o := object{kind: KindVolume, name: displayName(id), key: nthKey(key, seen[key])}
		v.volume(o, vol)
		v.unique(volumeAt, id, o, "metadata.name", "Volume "+strconv.Quote(id))
	}
	sortFieldErrors(v.errs)
	return capFieldErrors(v.errs)
}

// objects returns the kind, display name and Origins key of every object.
func (s *Set) objects() (topos, tenants, workloads, policies []object) {
	seen := map[string]int{}
	ref := func(kind, tenant, name string) object {
		key := objectKey(kind, tenant, name)
		seen[key]++
		display := name
		if kind == KindWorkload && tenant != "" {
			display = tenant + "/" + name
		}
		return object{kind: kind, name: displayName(display), key: nthKey(key, seen[key])}
	}
	for _, t := range s.Topologies {
		topos = append(topos, ref(KindTopology, "", t.Metadata.Name))
	}
	for _, t := range s.Tenants {
		tenants = append(tenants, ref(KindTenant, "", t.Metadata.Name))
	}
	for _, w := range s.Workloads {
		workloads = append(workloads, ref(KindWorkload, w.Metadata.Tenant, w.Metadata.Name))
	}
	for _, p := range s.Policies {
		policies = append(policies, ref(KindPolicy, "", p.Metadata.Name))
	}
	return topos, tenants, workloads, policies
}

// displayName is name as shown in an error: as is if plain, else quoted so
// that control characters cannot garble a terminal.
func displayName(name string) string {
	for _, r := range name {
		if !unicode.IsPrint(r) || r == ' ' || r == '"' {
			return strconv.Quote(truncate(name))
		}
	}
	return truncate(name)
}

func (v *validator) fail(o object, path, msg, fix string) {
	at := v.s.position(o.key, path)
	v.errs = append(v.errs, &FieldError{
		File: at.File, Doc: at.Doc, Line: at.Line,
		Kind: o.kind, Name: o.name, Field: path, Msg: msg, Fix: fix,
	})
}

// where describes where a field was defined, for duplicate errors.
func (v *validator) where(d definedAt, here object, path string) string {
	at := v.s.position(d.o.key, d.path)
	var s string
	switch {
	case at.File != "" && at.File == v.s.position(here.key, path).File && at.Line > 0:
		s = fmt.Sprintf("line %d", at.Line)
	case at.File != "" && at.Line > 0:
		s = fmt.Sprintf("%s:%d", at.File, at.Line)
	case at.File != "" && at.Doc > 0:
		s = fmt.Sprintf("%s document %d", at.File, at.Doc)
	case at.File != "":
		s = at.File
	case at.Line > 0:
		s = fmt.Sprintf("line %d", at.Line)
	default:
		s = "another document"
	}
	if d.path != "metadata.name" {
		s += fmt.Sprintf(" (%s %s, %s)", d.o.kind, d.o.name, d.path)
	}
	return s
}

// unique records name in seen, or reports it as a duplicate of an earlier one.
func (v *validator) unique(seen map[string]definedAt, name string, o object, path, what string) {
	if first, dup := seen[name]; dup {
		v.fail(o, path, fmt.Sprintf("%s is also defined at %s", what, v.where(first, o, path)),
			"rename or remove one of them")
		return
	}
	seen[name] = definedAt{o, path}
}

// meta checks an object's metadata; it reports whether the name is valid.
func (v *validator) meta(o object, m ObjectMeta, example string) bool {
	ok := v.dnsLabel(o, "metadata.name", m.Name, example)
	if o.kind != KindWorkload && m.Tenant != "" {
		v.fail(o, "metadata.tenant", "only Workloads belong to a tenant", "remove it")
	}
	v.labels(o, "metadata.labels", m.Labels)
	return ok
}

// dnsLabel checks that value is an RFC 1123 DNS label; example is a good one.
func (v *validator) dnsLabel(o object, path, value, example string) bool {
	if value == "" {
		v.fail(o, path, "missing", fmt.Sprintf("set it to a DNS label such as %q", example))
		return false
	}
	if IsDNSLabel(value) {
		return true
	}
	fix := "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
	if s := toDNSLabel(value); s != "" {
		fix += fmt.Sprintf(", e.g. %q", s)
	}
	v.fail(o, path, fmt.Sprintf("%q is not a DNS label", truncate(value)), fix)
	return false
}

// IsDNSLabel reports whether s is an RFC 1123 label (the rule for every
// name in rung): at most 63 lowercase
// letters, digits and '-', starting and ending with a letter or digit.
func IsDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// toDNSLabel suggests a DNS label close to s, or "".
func toDNSLabel(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
		if b.Len() >= 63 {
			break
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	if !IsDNSLabel(out) {
		return ""
	}
	return out
}

// labels checks a label map: Kubernetes label keys and values.
func (v *validator) labels(o object, path string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p := join(path, k)
		if !isLabelKey(k) {
			v.fail(o, p, fmt.Sprintf("%q is not a label key", truncate(k)),
				"use an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
			continue
		}
		if !isLabelValue(m[k]) {
			v.fail(o, p, fmt.Sprintf("%q is not a label value", truncate(m[k])),
				"use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
		}
	}
}

// isLabelKey reports whether s is a Kubernetes label key: [prefix/]name.
func isLabelKey(s string) bool {
	prefix, name, ok := strings.Cut(s, "/")
	if !ok {
		return isLabelValue(prefix) && prefix != ""
	}
	if len(prefix) == 0 || len(prefix) > 253 || name == "" || !isLabelValue(name) {
		return false
	}
	for l := range strings.SplitSeq(prefix, ".") {
		if !IsDNSLabel(l) {
			return false
		}
	}
	return true
}

// isLabelValue reports whether s is a Kubernetes label value.
func isLabelValue(s string) bool {
	if len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(s)-1 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}

// enum checks that a set value is one of allowed.
func (v *validator) enum(o object, path, value, what string, allowed []string) bool {
	if value == "" || slices.Contains(allowed, value) {
		return true
	}
	fix := "use one of " + strings.Join(allowed, ", ")
	if s := closest(value, allowed); s != "" {
		fix = fmt.Sprintf("did you mean %q?", s)
	}
	v.fail(o, path, fmt.Sprintf("%q is not a %s", truncate(value), what), fix)
	return false
}

func tierNames() []string {
	out := make([]string, len(Tiers))
	for i, t := range Tiers {
		out[i] = string(t)
	}
	return out
}

// tier checks an optional tier.
func (v *validator) tier(o object, path string, t Tier) bool {
	return v.enum(o, path, string(t), "tier", tierNames())
}

// level checks that a spread or affinity names a known level.
func (v *validator) level(o object, path, level string) {
	switch {
	case level == "":
		v.fail(o, path, "missing", "name a level: "+strings.Join(v.levels, ", "))
	case !v.known[level]:
		fix := "use one of " + strings.Join(v.levels, ", ") + ", or add it to a Topology's spec.levels"
		if s := closest(level, v.levels); s != "" {
			fix = fmt.Sprintf("did you mean %q?", s)
		}
		v.fail(o, path, fmt.Sprintf("unknown level %q", truncate(level)), fix)
	}
}

// resources checks quantities; a node's capacity needs CPU and memory.
func (v *validator) resources(o object, path string, r Resources, capacity bool) {
	for _, q := range []struct {
		name, example string
		q             *resource.Quantity
	}{
		{"cpu", "cpu: 32", r.CPU},
		{"memory", "memory: 128Gi", r.Memory},
	} {
		p := join(path, q.name)
		switch {
		case q.q == nil && capacity:
			v.fail(o, p, "missing", fmt.Sprintf("set the node's %s, e.g. %s", q.name, q.example))
		case q.q == nil:
		case q.q.Sign() < 0:
			v.fail(o, p, fmt.Sprintf("%s is negative", q.q.String()), "use 0 or more")
		case capacity && q.q.IsZero():
			v.fail(o, p, "must be greater than 0", fmt.Sprintf("set the node's %s, e.g. %s", q.name, q.example))
		}
	}
	if r.PIDs < 0 {
		v.fail(o, join(path, "pids"), fmt.Sprintf("%d is negative", r.PIDs), "use a positive number, or leave it out")
	}
	if r.Limits != nil && (capacity || path != "spec.resources") {
		v.fail(o, join(path, "limits"), "only a workload's spec.resources has limits", "remove limits here")
	}
}

// limits checks a workload's burst limits against its requests.
func (v *validator) limits(o object, r Resources) {
	if r.Limits == nil {
		return
	}
	for _, q := range []struct {
		name     string
		req, lim *resource.Quantity
	}{
		{"cpu", r.CPU, r.Limits.CPU},
		{"memory", r.Memory, r.Limits.Memory},
	} {
		p := join("spec.resources.limits", q.name)
		switch {
		case q.lim == nil:
		case q.req == nil:
			v.fail(o, p, "a limit without a request", fmt.Sprintf("set spec.resources.%s (the guaranteed request) too", q.name))
		case q.lim.Sign() <= 0:
			v.fail(o, p, fmt.Sprintf("%s is not positive", q.lim.String()), "use a limit above the request, or leave it out")
		case q.lim.Cmp(*q.req) < 0:
			v.fail(o, p, fmt.Sprintf("%s is below the request %s", q.lim.String(), q.req.String()),
				fmt.Sprintf("raise the limit to at least spec.resources.%s, or lower the request", q.name))
		}
	}
}

// noisy checks a Policy's spec.noisy.
func (v *validator) noisy(o object, n *NoisyPolicy) {
	if n == nil {
		return
	}
	if n.Threshold < 1 || n.Threshold > 99 {
		v.fail(o, "spec.noisy.threshold", fmt.Sprintf("%d is out of range", n.Threshold), "use a percentage from 1 to 99, e.g. 20")
	}
	if len(n.Actions) == 0 {
		v.fail(o, "spec.noisy.actions", "missing", "list the ladder, e.g. [throttle, report, move]")
	}
	seen := map[string]bool{}
	for i, a := range n.Actions {
		p := index("spec.noisy.actions", i)
		switch {
		case !slices.Contains([]string{"throttle", "report", "move", "isolate"}, a):
			fix := "use throttle, report, move or isolate"
			if s := closest(a, []string{"throttle", "report", "move", "isolate"}); s != "" {
				fix = fmt.Sprintf("did you mean %q?", s)
			}
			v.fail(o, p, fmt.Sprintf("%q is not an action", truncate(a)), fix)
		case seen[a]:
			v.fail(o, p, fmt.Sprintf("%q is listed twice", a), "list each action once")
		}
		seen[a] = true
	}
	if n.Interval != "" {
		if d, err := time.ParseDuration(n.Interval); err != nil || d < 100*time.Millisecond || d > time.Hour {
			v.fail(o, "spec.noisy.interval", fmt.Sprintf("%q is not a duration from 100ms to 1h", truncate(n.Interval)), `use a Go duration such as "2s"`)
		}
	}
	v.bounded(o, "spec.noisy.hold", n.Hold, 1000)
	v.bounded(o, "spec.noisy.calm", n.Calm, 100000)
}

// bounded checks 0 <= n <= max.
func (v *validator) bounded(o object, path string, n, max int) {
	if n < 0 || n > max {
		v.fail(o, path, fmt.Sprintf("%d is out of range", n), fmt.Sprintf("use 0 to %d", max))
	}
}

// noNUL checks a string passed to a process (argument, environment).
func (v *validator) noNUL(o object, path, s string) {
	if strings.ContainsRune(s, 0) {
		v.fail(o, path, "contains a NUL byte", "remove it; processes cannot receive NUL bytes")
	}
}

func (v *validator) topologies(topos []object, tenantAt map[string]definedAt) {
	nodes := map[string]nodeAt{}       // first node of each name
	nodeDefs := map[string]definedAt{} // the same, for duplicate errors
	var all []nodeAt
	for ti := range v.s.Topologies {
		t, o := &v.s.Topologies[ti], topos[ti]
		v.meta(o, t.Metadata, "campus")
		seen := map[string]bool{}
		for i, l := range t.Spec.Levels {
			p := index("spec.levels", i)
			switch {
			case !v.dnsLabel(o, p, l, "building"):
			case slices.Contains(NestedLevels, l) || slices.Contains(OrthogonalLevels, l):
				v.fail(o, p, fmt.Sprintf("%q is a built-in level", l), "remove it; built-in levels need no declaration")
			case seen[l]:
				v.fail(o, p, fmt.Sprintf("%q is listed twice", l), "remove one of them")
			}
			seen[l] = true
		}
		for i := range t.Spec.Nodes {
			n := &t.Spec.Nodes[i]
			at := nodeAt{o: o, path: index("spec.nodes", i), n: n}
			if v.dnsLabel(o, join(at.path, "name"), n.Name, "h1") {
				if _, dup := nodes[n.Name]; !dup {
					nodes[n.Name] = at
				}
				v.unique(nodeDefs, n.Name, o, join(at.path, "name"), "node "+strconv.Quote(n.Name))
			}
			all = append(all, at)
			v.node(at, tenantAt)
		}
	}
	for _, at := range all {
		v.nodeHost(at, nodes)
	}
}

// node checks one node on its own.
func (v *validator) node(at nodeAt, tenantAt map[string]definedAt) {
	o, n := at.o, at.n
	if n.Tenant != "" && v.dnsLabel(o, join(at.path, "tenant"), n.Tenant, "biology") {
		v.defined(o, join(at.path, "tenant"), n.Tenant, tenantAt,
			fmt.Sprintf("tenant %q is not defined", n.Tenant), "or remove tenant")
	}
	domains := join(at.path, "domains")
	for _, k := range slices.Sorted(maps.Keys(n.Domains)) {
		p := join(domains, k)
		switch {
		case k == "host" || k == "vm":
			v.fail(o, p, fmt.Sprintf("the %s level comes from the node's name and host field", k), "remove it")
		case !v.known[k]:
			fix := "use a level: " + strings.Join(v.levels, ", ") + ", or add it to spec.levels"
			if s := closest(k, v.levels); s != "" {
				fix = fmt.Sprintf("did you mean %q? or add it to spec.levels", s)
			}
			v.fail(o, p, fmt.Sprintf("unknown level %q", truncate(k)), fix)
		case n.Domains[k] == "":
			v.fail(o, p, "empty domain", "name the domain, or remove the key")
		}
	}
	v.labels(o, join(at.path, "labels"), n.Labels)
	v.resources(o, join(at.path, "capacity"), n.Capacity, true)
	seen := map[Tier]bool{}
	for i, t := range n.Runtimes {
		p := index(join(at.path, "runtimes"), i)
		switch {
		case t == "":
			v.fail(o, p, "empty", "use one of "+strings.Join(tierNames(), ", "))
		case !v.tier(o, p, t):
		case seen[t]:
			v.fail(o, p, fmt.Sprintf("%q is listed twice", t), "remove one of them")
		}
		seen[t] = true
	}
}

// nodeHost checks a VM node's host: an existing physical node whose domains
// the VM node does not contradict.
func (v *validator) nodeHost(at nodeAt, nodes map[string]nodeAt) {
	h, name := at.n.Host, at.n.Name
	p := join(at.path, "host")
	if h == "" || !v.dnsLabel(at.o, p, h, "h1") {
		return
	}
	const fixPhysical = "name a physical node (one without host) from spec.nodes"
	if h == name {
		v.fail(at.o, p, fmt.Sprintf("node %q is its own host, a cycle", name), fixPhysical)
		return
	}
	host, ok := nodes[h]
	if !ok {
		if !v.broken.topology {
			v.fail(at.o, p, fmt.Sprintf("node %q does not exist", h), fixPhysical)
		}
		return
	}
	if host.n.Host == "" {
		v.inherits(at, host)
		return
	}
	// The host is a VM node: follow the chain of hosts to a physical node
	// or around a cycle.
	chain := []string{name, h}
	seen := map[string]bool{name: true, h: true}
	for cur := host; ; {
		next := cur.n.Host
		if next == name {
			chain = append(chain, name)
			v.fail(at.o, p, "VM nodes form a cycle "+strings.Join(chain, " → "), fixPhysical)
			return
		}
		nx, ok := nodes[next]
		switch {
		case !ok || seen[next]:
			v.fail(at.o, p, fmt.Sprintf("node %q is a VM node, not a physical node", h), fixPhysical)
			return
		case nx.n.Host == "":
			v.fail(at.o, p, fmt.Sprintf("node %q is a VM node on %q, not a physical node", h, next),
				fmt.Sprintf("set host to %q, a physical node", next))
			return
		}
		seen[next] = true
		chain = append(chain, next)
		cur = nx
	}
}

// inherits checks that a VM node's domains agree with its physical host's.
func (v *validator) inherits(at nodeAt, host nodeAt) {
	domains := join(at.path, "domains")
	for _, k := range slices.Sorted(maps.Keys(at.n.Domains)) {
		want, set := host.n.Domains[k]
		if got := at.n.Domains[k]; set && k != "host" && k != "vm" && got != "" && got != want {
			v.fail(at.o, join(domains, k),
				fmt.Sprintf("%q contradicts host node %s's %s %q", truncate(got), host.n.Name, k, truncate(want)),
				fmt.Sprintf("remove it; a VM node inherits its host's domains (%s %q)", k, truncate(want)))
		}
	}
}

// defined checks that a tenant name refers to a defined Tenant.
func (v *validator) defined(o object, path, name string, tenantAt map[string]definedAt, msg, orElse string) bool {
	if _, ok := tenantAt[name]; ok || v.broken.tenants[name] {
		return true
	}
	fix := fmt.Sprintf("define a Tenant named %q, %s", name, orElse)
	names := slices.Sorted(maps.Keys(tenantAt))
	if s := closest(name, names); s != "" {
		fix = fmt.Sprintf("did you mean %q? or define a Tenant named %q", s, name)
	}
	v.fail(o, path, msg, fix)
	return false
}

func (v *validator) tenant(o object, t *TenantSpec) {
	if len(t.Organization) > 253 {
		v.fail(o, "spec.organization", "longer than 253 bytes", "shorten it")
	}
	v.enum(o, "spec.trust", string(t.Trust), "trust level", []string{string(TrustTrusted), string(TrustUntrusted)})
	v.tier(o, "spec.isolation.minimum", t.Isolation.Minimum)
	v.resources(o, "spec.quota", Resources{CPU: t.Quota.CPU, Memory: t.Quota.Memory}, false)
	if t.Quota.Replicas < 0 {
		v.fail(o, "spec.quota.replicas", fmt.Sprintf("%d is negative", t.Quota.Replicas), "use 0 or more")
	}
	for i, r := range t.Images.Registries {
		if strings.TrimSpace(r) == "" || strings.ContainsFunc(r, unicode.IsSpace) {
			v.fail(o, index("spec.images.registries", i), fmt.Sprintf("%q is not a registry prefix", truncate(r)),
				"write a prefix such as \"registry.example.com/team/\"")
		}
	}
	for i, k := range t.Images.SignedBy {
		if strings.TrimSpace(k) == "" {
			v.fail(o, index("spec.images.signedBy", i), "empty", "name a cosign public key file")
		}
	}
	v.enum(o, "spec.images.blockSeverity", t.Images.BlockSeverity, "severity", Severities)
}

// Severities are the severity names of admission rules and of a tenant's
// vulnerability blocking threshold, least severe first.
var Severities = []string{"low", "medium", "high", "critical"}

// Admission rule subjects.
const (
	AdmissionOnWorkload = "workload"
	AdmissionOnImage    = "image"
)

// admission checks a Policy's spec.admission. The CEL expressions are
// compiled by the admission engine (internal/policy), which also refuses
// IDs of built-in checks; here the shape is checked, and IDs are unique
// across every Policy of the set.
func (v *validator) admission(o object, a *Admission, idAt map[string]definedAt) {
	for i, r := range a.Rules {
		path := index("spec.admission.rules", i)
		switch {
		case strings.TrimSpace(r.ID) == "":
			v.fail(o, join(path, "id"), "missing", `set a unique ID such as "SITE-no-latest-tag"`)
		case !isRuleID(r.ID):
			v.fail(o, join(path, "id"), fmt.Sprintf("%q is not a rule ID", truncate(r.ID)),
				"use 1-64 letters, digits, '.', '_' or '-', starting with a letter")
		default:
			v.unique(idAt, r.ID, o, join(path, "id"), "admission rule "+strconv.Quote(r.ID))
		}
		if strings.TrimSpace(r.Title) == "" {
			v.fail(o, join(path, "title"), "missing", "say in a few words what the rule requires")
		}
		v.enum(o, join(path, "severity"), r.Severity, "severity", Severities)
		v.enum(o, join(path, "on"), r.On, "rule subject", []string{AdmissionOnWorkload, AdmissionOnImage})
		if strings.TrimSpace(r.Deny) == "" {
			v.fail(o, join(path, "deny"), "missing",
				"write a CEL condition that is true when the subject must be rejected, e.g. workload.replicas > 5")
		}
	}
	if a.MaxImageAge != "" {
		d, err := time.ParseDuration(a.MaxImageAge)
		switch {
		case err != nil:
			v.fail(o, "spec.admission.maxImageAge", fmt.Sprintf("%q is not a duration", truncate(a.MaxImageAge)),
				`write a duration in hours such as "720h" (30 days)`)
		case d <= 0:
			v.fail(o, "spec.admission.maxImageAge", fmt.Sprintf("%s is not positive", a.MaxImageAge),
				`write a positive duration such as "720h"; the image age check cannot be turned off`)
		}
	}
}

// isRuleID reports whether s is a valid admission rule ID: 1-64 letters,
// digits, '.', '_' or '-', starting with a letter.
func isRuleID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r < 0x80 && unicode.IsLetter(r):
		case i > 0 && (r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// workloadTenant checks a workload's metadata.tenant.
func (v *validator) workloadTenant(o object, tenant string, tenantAt map[string]definedAt) bool {
	const path = "metadata.tenant"
	if tenant == "" {
		v.fail(o, path, "missing: every workload belongs to a tenant", "set metadata.tenant to the name of its Tenant")
		return false
	}
	return v.dnsLabel(o, path, tenant, "biology") &&
		v.defined(o, path, tenant, tenantAt, fmt.Sprintf("workload of an undefined tenant %q", tenant), "or correct the name")
}

func (v *validator) workload(o object, w *WorkloadSpec) {
	if strings.ContainsFunc(w.Image, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		v.fail(o, "spec.image", fmt.Sprintf("%q contains spaces or control characters", truncate(w.Image)),
			"write an image reference such as registry.example/app@sha256:…")
	}
	for i, a := range w.Command {
		v.noNUL(o, index("spec.command", i), a)
	}
	for i, a := range w.Args {
		v.noNUL(o, index("spec.args", i), a)
	}
	for _, k := range slices.Sorted(maps.Keys(w.Env)) {
		p := join("spec.env", k)
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.fail(o, p, fmt.Sprintf("%q is not an environment variable name", truncate(k)),
				"use a name without '=', such as LOG_LEVEL")
		}
		v.noNUL(o, p, w.Env[k])
	}
	if w.Replicas != nil {
		v.bounded(o, "spec.replicas", *w.Replicas, MaxReplicas)
	}
	v.resources(o, "spec.resources", w.Resources, false)
	v.limits(o, w.Resources)
	v.enum(o, "spec.dataClass", string(w.DataClass), "data class",
		[]string{string(DataPublic), string(DataInternal), string(DataConfidential), string(DataRestricted)})
	v.enum(o, "spec.privilege", string(w.Privilege), "privilege level",
		[]string{string(PrivilegeStandard), string(PrivilegeElevated)})
	if len(w.Capabilities) > 0 && w.Privilege != PrivilegeElevated {
		v.fail(o, "spec.capabilities", "capabilities need privilege: elevated",
			"set spec.privilege: elevated, or remove the capabilities")
	}
	for i, c := range w.Capabilities {
		if c == "" {
			v.fail(o, index("spec.capabilities", i), "empty", "name a capability such as NET_BIND_SERVICE")
		}
	}
	v.tier(o, "spec.isolation.minimum", w.Isolation.Minimum)
	for i, s := range w.Spread {
		p := index("spec.spread", i)
		v.level(o, join(p, "level"), s.Level)
		v.bounded(o, join(p, "minDomains"), s.MinDomains, MaxSpreadDomains)
		v.bounded(o, join(p, "maxPerDomain"), s.MaxPerDomain, MaxSpreadDomains)
		if s.MinDomains == 0 && s.MaxPerDomain == 0 {
			v.fail(o, p, "needs minDomains or maxPerDomain", "set minDomains (e.g. 2) or maxPerDomain (e.g. 1)")
		}
	}
	for i := range w.Affinity {
		v.affinity(o, index("spec.affinity", i), &w.Affinity[i])
	}
	v.enum(o, "spec.restartPolicy", string(w.RestartPolicy), "restart policy",
		[]string{string(RestartAlways), string(RestartOnFailure), string(RestartNever)})
	if h := w.Healthcheck; h != nil {
		if len(h.Command) == 0 || h.Command[0] == "" {
			v.fail(o, "spec.healthcheck.command", "missing", `name a command that exits 0 when healthy, e.g. ["wget", "-q", "-O-", "http://127.0.0.1:8080/healthz"]`)
		}
		for i, a := range h.Command {
			v.noNUL(o, index("spec.healthcheck.command", i), a)
		}
		v.duration(o, "spec.healthcheck.interval", h.Interval, time.Second)
		v.duration(o, "spec.healthcheck.timeout", h.Timeout, 10*time.Millisecond)
		v.duration(o, "spec.healthcheck.startPeriod", h.StartPeriod, 0)
		v.bounded(o, "spec.healthcheck.retries", h.Retries, 100)
	}
	if len(w.Secrets) > MaxSecretMounts {
		v.fail(o, "spec.secrets", fmt.Sprintf("%d secrets, more than %d", len(w.Secrets), MaxSecretMounts), "mount fewer secrets, or put several keys in one Secret")
	}
	seen := map[string]bool{}
	for i, m := range w.Secrets {
		p := index("spec.secrets", i)
		v.dnsLabel(o, join(p, "name"), m.Name, "db-password")
		clean := path.Clean(m.MountPath)
		switch {
		case !strings.HasPrefix(m.MountPath, "/") || clean != m.MountPath || clean == "/":
			v.fail(o, join(p, "mountPath"), fmt.Sprintf("%q is not a clean absolute path below /", truncate(m.MountPath)), "use a path such as /run/secrets/db")
		case slices.ContainsFunc([]string{"/proc", "/sys", "/dev", "/tmp"}, func(d string) bool { return clean == d || strings.HasPrefix(clean, d+"/") }):
			v.fail(o, join(p, "mountPath"), fmt.Sprintf("%s is inside a directory the runtime owns", clean), "use a path such as /run/secrets/db")
		case seen[clean]:
			v.fail(o, join(p, "mountPath"), fmt.Sprintf("%s is used twice", clean), "give each secret a path of its own")
		}
		seen[clean] = true
	}
	if r := w.Rollout.MaxUnavailable; r != nil {
		v.bounded(o, "spec.rollout.maxUnavailable", *r, MaxReplicas)
	}
	if r := w.Rollout.MaxSurge; r != nil {
		v.bounded(o, "spec.rollout.maxSurge", *r, MaxReplicas)
	}
	if u, s := w.Rollout.MaxUnavailable, w.Rollout.MaxSurge; u != nil && s != nil && *u == 0 && *s == 0 {
		v.fail(o, "spec.rollout", "maxUnavailable and maxSurge are both 0: no replica could ever be replaced",
			"set maxSurge: 1 (start a new replica before stopping an old one) or maxUnavailable: 1")
	}
}

// maxDuration bounds every duration of a manifest.
const maxDuration = 24 * time.Hour

// duration checks an optional Go duration string: at least min, at most a day.
func (v *validator) duration(o object, path, s string, min time.Duration) {
	if s == "" {
		return
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.fail(o, path, fmt.Sprintf("%q is not a duration", truncate(s)), "write a duration such as 10s, 500ms or 1m30s")
	case d < min:
		v.fail(o, path, fmt.Sprintf("%s is shorter than %s", s, min), fmt.Sprintf("use %s or more", min))
	case d > maxDuration:
		v.fail(o, path, fmt.Sprintf("%s is longer than %s", s, maxDuration), "use a shorter duration")
	}
}

func (v *validator) affinity(o object, p string, a *Affinity) {
	var set []string
	for _, s := range []struct{ name, value string }{{"workload", a.Workload}, {"tenant", a.Tenant}, {"label", a.Label}} {
		if s.value != "" {
			set = append(set, s.name)
		}
	}
	switch len(set) {
	case 0:
		v.fail(o, p, "selects nothing", "set exactly one of workload, tenant or label")
	case 1:
	default:
		v.fail(o, p, "sets "+strings.Join(set, " and "), "keep exactly one of workload, tenant or label")
	}
	if a.Workload != "" {
		// A workload of the same tenant, or TENANT/NAME.
		tenant, name, other := strings.Cut(a.Workload, "/")
		if !other {
			tenant, name = "", tenant
		}
		if !IsDNSLabel(name) || other && !IsDNSLabel(tenant) {
			v.fail(o, join(p, "workload"), fmt.Sprintf("%q is not a workload name", truncate(a.Workload)),
				"name a workload of this tenant, or TENANT/NAME, each a DNS label")
		}
	}
	if a.Tenant != "" {
		v.dnsLabel(o, join(p, "tenant"), a.Tenant, "biology")
	}
	if a.Label != "" {
		key, value, ok := strings.Cut(a.Label, "=")
		if !ok || !isLabelKey(key) || !isLabelValue(value) {
			v.fail(o, join(p, "label"), fmt.Sprintf("%q is not key=value", truncate(a.Label)),
				"write a label selector such as app=db")
		}
	}
	switch a.Op {
	case "==", "!=":
	case "":
		v.fail(o, join(p, "op"), "missing", `use "==" (same domain) or "!=" (different domain)`)
	default:
		v.fail(o, join(p, "op"), fmt.Sprintf("%q is not an operator", truncate(a.Op)),
			`use "==" (same domain) or "!=" (different domain)`)
	}
	v.level(o, join(p, "level"), a.Level)
}

func (v *validator) policy(o object, p *PolicySpec, ruleAt map[string]definedAt) {
	for i, r := range p.Rules {
		path := index("spec.rules", i)
		if v.dnsLabel(o, join(path, "name"), r.Name, "bank-needs-own-hardware") {
			v.unique(ruleAt, r.Name, o, join(path, "name"), "rule "+strconv.Quote(r.Name))
		}
		if strings.TrimSpace(r.When) == "" {
			v.fail(o, join(path, "when"), "missing",
				`write a CEL condition over attacker and victim, e.g. attacker.tenant.trust == "untrusted"`)
		}
		if r.Require == "" {
			v.fail(o, join(path, "require"), "missing", "name the tier the rule requires: "+strings.Join(tierNames(), ", "))
		} else {
			v.tier(o, join(path, "require"), r.Require)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(p.TierOverhead)) {
		path := join("spec.tierOverhead", string(t))
		if t == "" || !slices.Contains(Tiers, t) {
			fix := "use one of " + strings.Join(tierNames(), ", ")
			if s := closest(string(t), tierNames()); s != "" {
				fix = fmt.Sprintf("did you mean %q?", s)
			}
			v.fail(o, path, fmt.Sprintf("%q is not a tier", truncate(string(t))), fix)
			continue
		}
		v.resources(o, path, p.TierOverhead[t], false)
	}
	v.noisy(o, p.Noisy)
}

// closest returns the candidate nearest to word, if one is near enough to be
// a likely typo, else "".
func closest(word string, candidates []string) string {
	if len(word) > 64 {
		return ""
	}
	for _, c := range candidates {
		if strings.EqualFold(word, c) {
			return c
		}
	}
	limit := min(2, max(1, len(word)/3))
	best, bestD := "", limit+1
	for _, c := range candidates {
		if len(c) > 64 {
			continue
		}
		if d := editDistance(word, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
