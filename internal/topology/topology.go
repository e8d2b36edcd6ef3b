// Package topology is the compact, indexed model of nodes and the failure
// domains they belong to, built from validated Topology manifests. It is
// pure: the scheduler reads it, nothing here does I/O.
package topology

import (
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/tenancy"
)

// ErrUnknown is returned for a level, domain or node that does not exist.
var ErrUnknown = errors.New("unknown")

// NoDomain marks a node that belongs to no domain of a level.
const NoDomain = -1

// Resources is an amount in the engine's units.
type Resources struct {
	MilliCPU int64
	Memory   int64 // bytes
	PIDs     int64
}

// Add returns r+o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.MilliCPU + o.MilliCPU, r.Memory + o.Memory, r.PIDs + o.PIDs}
}

// Sub returns r-o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.MilliCPU - o.MilliCPU, r.Memory - o.Memory, r.PIDs - o.PIDs}
}

// Fits reports whether r fits into free. A zero PIDs capacity means unlimited.
func (r Resources) Fits(free Resources, pidsLimited bool) bool {
	return r.MilliCPU <= free.MilliCPU && r.Memory <= free.Memory && (!pidsLimited || r.PIDs <= free.PIDs)
}

// FromV1 converts manifest quantities.
func FromV1(r v1.Resources) Resources {
	return Resources{MilliCPU: milli(r.CPU), Memory: value(r.Memory), PIDs: r.PIDs}
}

// LimitsFromV1 converts a workload's burst limits (nil: none); a limit
// left out is the request (no burst of that resource).
func LimitsFromV1(r v1.Resources) *Resources {
	if r.Limits == nil {
		return nil
	}
	out := FromV1(r)
	if r.Limits.CPU != nil {
		out.MilliCPU = milli(r.Limits.CPU)
	}
	if r.Limits.Memory != nil {
		out.Memory = value(r.Limits.Memory)
	}
	return &out
}

func milli(q *resource.Quantity) int64 {
	if q == nil {
		return 0
	}
	return q.MilliValue()
}

func value(q *resource.Quantity) int64 {
	if q == nil {
		return 0
	}
	return q.Value()
}

// Node is one schedulable node: a physical host or a VM node on one.
type Node struct {
	Name string
	// Host is the index of the physical node; equal to the node's own index
	// for a physical node.
	Host int
	// VM is true for a VM node.
	VM bool
	// Tenant, when set, is the only tenant this (VM) node serves.
	Tenant   string
	Labels   map[string]string
	Capacity Resources
	// Runtimes are the tiers the node offers now.
	Runtimes tenancy.Set
	// Listed is true when the manifest lists the node's runtimes; a node
	// that lists none offers the defaults or what its agent detects.
	Listed bool
	// Undetected are the listed tiers the node's agent reports it cannot
	// run (see Detected): named in explanations, never offered.
	Undetected tenancy.Set
	// Networked: the node's Topology has a tenant network, so every
	// replica on it joins one; NetworkTiers are the tiers the node can
	// attach a network to and NoNetwork the tiers it would offer but
	// can't (network.go): named in explanations, never offered.
	Networked               bool
	NetworkTiers, NoNetwork tenancy.Set
	// Domain holds, per level index, the domain index or NoDomain.
	Domain []int32
	Down   bool
}

// Topology is every node and every domain, indexed.
type Topology struct {
	Levels     []string
	levelIndex map[string]int
	// Domains holds, per level index, the domain names.
	Domains     [][]string
	domainIndex []map[string]int32
	Nodes       []Node
	nodeIndex   map[string]int
	// HostLevel and VMLevel are the indices of the built-in host and vm levels.
	HostLevel, VMLevel int
}

// DefaultRuntimes is what a node offers when its manifest lists none and no
// agent has reported (DESIGN §4).
var DefaultRuntimes = tenancy.Set(0).With(tenancy.Container).With(tenancy.Sandbox)

// Build indexes validated Topology manifests. Extra levels are appended after
// the built-in ones. defaults is the runtime set for nodes that list none.
func Build(tops []v1.Topology, defaults tenancy.Set) (*Topology, error) {
	t := &Topology{levelIndex: map[string]int{}, nodeIndex: map[string]int{}}
	addLevel := func(l string) {
		if _, ok := t.levelIndex[l]; !ok {
			t.levelIndex[l] = len(t.Levels)
			t.Levels = append(t.Levels, l)
			t.Domains = append(t.Domains, nil)
			t.domainIndex = append(t.domainIndex, map[string]int32{})
		}
	}
	for _, l := range v1.NestedLevels {
		addLevel(l)
	}
	for _, l := range v1.OrthogonalLevels {
		addLevel(l)
	}
	for _, top := range tops {
		for _, l := range top.Spec.Levels {
			addLevel(l)
		}
	}
	t.HostLevel, t.VMLevel = t.levelIndex["host"], t.levelIndex["vm"]

	// Physical nodes first so VM nodes can find their host's index.
	var vms []v1.Node
	for _, top := range tops {
		for _, n := range top.Spec.Nodes {
			if n.Host != "" {
				vms = append(vms, n)
				continue
			}
			if err := t.addNode(n, -1, defaults); err != nil {
				return nil, err
			}
		}
	}
	for _, n := range vms {
		h, ok := t.nodeIndex[n.Host]
		if !ok || t.Nodes[h].VM {
			return nil, fmt.Errorf("node %s: host %q: %w physical node", n.Name, n.Host, ErrUnknown)
		}
		if err := t.addNode(n, h, defaults); err != nil {
			return nil, err
		}
	}
	t.markNetworked(tops)
	return t, nil
}

func (t *Topology) addNode(n v1.Node, host int, defaults tenancy.Set) error {
	if _, dup := t.nodeIndex[n.Name]; dup {
		return fmt.Errorf("node %s: defined twice", n.Name)
	}
	idx := len(t.Nodes)
	node := Node{
		Name:     n.Name,
		Host:     idx,
		Tenant:   n.Tenant,
		Labels:   n.Labels,
		Capacity: FromV1(n.Capacity),
		Domain:   make([]int32, len(t.Levels)),
	}
	for i := range node.Domain {
		node.Domain[i] = NoDomain
	}
	if host >= 0 {
		node.Host, node.VM = host, true
		copy(node.Domain, t.Nodes[host].Domain)
	}
	for level, name := range n.Domains {
		li, ok := t.levelIndex[level]
		if !ok {
			return fmt.Errorf("node %s: level %q: %w level", n.Name, level, ErrUnknown)
		}
		node.Domain[li] = t.domain(li, name)
	}
	node.Domain[t.HostLevel] = t.domain(t.HostLevel, t.nameOf(node.Host, n.Name))
	if node.VM {
		node.Domain[t.VMLevel] = t.domain(t.VMLevel, n.Name)
	}
	if n.Runtimes == nil {
		node.Runtimes = defaults
	}
	node.Listed = n.Runtimes != nil
	for _, r := range n.Runtimes {
		tier, err := tenancy.ParseTier(r)
		if err != nil {
			return fmt.Errorf("node %s: runtimes: %w", n.Name, err)
		}
		node.Runtimes = node.Runtimes.With(tier)
	}
	t.nodeIndex[n.Name] = idx
	t.Nodes = append(t.Nodes, node)
	return nil
}

func (t *Topology) nameOf(idx int, self string) string {
	if idx < len(t.Nodes) {
		return t.Nodes[idx].Name
	}
	return self
}

func (t *Topology) domain(level int, name string) int32 {
	if d, ok := t.domainIndex[level][name]; ok {
		return d
	}
	d := int32(len(t.Domains[level]))
	t.domainIndex[level][name] = d
	t.Domains[level] = append(t.Domains[level], name)
	return d
}

// Level returns the index of a level.
func (t *Topology) Level(name string) (int, bool) {
	i, ok := t.levelIndex[name]
	return i, ok
}

// Node returns the index of a node.
func (t *Topology) Node(name string) (int, bool) {
	i, ok := t.nodeIndex[name]
	return i, ok
}

// HostName returns the physical host's name of node i.
func (t *Topology) HostName(i int) string { return t.Nodes[t.Nodes[i].Host].Name }

// Place returns node i as a tenancy.Place.
func (t *Topology) Place(i int) tenancy.Place {
	return tenancy.Place{Node: t.Nodes[i].Name, Host: t.HostName(i)}
}

// MarkDown marks every node in the domain level=name as down (a lost rack,
// PDU, host...). Marking a host down also takes its VM nodes.
func (t *Topology) MarkDown(level, name string) (int, error) {
	li, ok := t.levelIndex[level]
	if !ok {
		return 0, fmt.Errorf("down %s=%s: %w level %q (levels: %v)", level, name, ErrUnknown, level, t.Levels)
	}
	d, ok := t.domainIndex[li][name]
	if !ok {
		known := slices.Clone(t.Domains[li])
		slices.Sort(known)
		return 0, fmt.Errorf("down %s=%s: %w %s (known: %v)", level, name, ErrUnknown, level, known)
	}
	n := 0
	for i := range t.Nodes {
		if t.Nodes[i].Domain[li] == d && !t.Nodes[i].Down {
			t.Nodes[i].Down = true
			n++
		}
	}
	return n, nil
}

// Offers names the tiers n offers and, when its agent can't run tiers its
// manifest lists, those too: the operator sees why a listed vm is missing.
func (n *Node) Offers() string {
	s := n.Runtimes.String()
	if n.Undetected != 0 {
		s = fmt.Sprintf("%s (its agent can't run %s)", s, n.Undetected)
	}
	if n.NoNetwork != 0 {
		s += " (" + n.NetworkWhy() + ")"
	}
	return s
}

// Detected narrows what nodes offer to what their agents detect (DESIGN
// §4). report returns the tiers the agent of a node can run, and false
// for a node with no report (it keeps its runtimes). A node whose
// manifest lists runtimes offers those its agent can run; one that lists
// none offers what its agent detects except host, since handing a machine
// to one tenant is the operator's decision. It returns a note for each
// node whose offer changed, sorted by node.
func (t *Topology) Detected(report func(node string) (tenancy.Set, bool)) []string {
	var notes []string
	for i := range t.Nodes {
		n := &t.Nodes[i]
		got, ok := report(n.Name)
		if !ok {
			continue
		}
		// What the agent runs decides first, then what can join the
		// node's network (network.go).
		n.Runtimes, n.NoNetwork = n.Runtimes|n.NoNetwork, 0
		was := n.Runtimes
		if n.Listed {
			n.Runtimes &= got
			n.Undetected = was &^ got
		} else {
			n.Runtimes = got &^ tenancy.Set(0).With(tenancy.Host)
		}
		n.narrowNetwork()
		if n.Runtimes != was {
			why := "listed"
			if !n.Listed {
				why = "default"
			}
			notes = append(notes, fmt.Sprintf("node %s offers %s: its agent detects %s (%s: %s)", n.Name, n.Runtimes, got, why, was))
		}
	}
	slices.Sort(notes)
	return notes
}

// DomainName returns the name of node i's domain at level, or "".
func (t *Topology) DomainName(i, level int) string {
	d := t.Nodes[i].Domain[level]
	if d == NoDomain {
		return ""
	}
	return t.Domains[level][d]
}
