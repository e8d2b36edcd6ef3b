package scheduler

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Disk is a node's room for volumes, as the control plane knows it: what
// its agent reports of the volume directory's file system, and the
// volumes bound to the node.
type Disk struct {
	// Free is what new volumes may use now: the file system's free bytes
	// plus the bytes the node's volume images already hold (an image is
	// sparse: it claims the rest of its size as it is written).
	Free int64
	// Bound is the full size of every volume instance bound to the node,
	// whether its image exists yet or not: each may grow to its size.
	Bound int64
	// Shared names a disk several nodes share (one machine standing for
	// them): the volumes a plan puts on any of them count against all.
	Shared string
}

// Left is what a volume not bound yet may still take on the node.
func (d Disk) Left() int64 { return d.Free - d.Bound }

// SetDisk records the nodes' room for volumes, by node name; a node
// missing from byNode (its agent reported no disk) is not checked.
func (p *Problem) SetDisk(byNode map[string]Disk) {
	p.Disk = make([]*Disk, len(p.Topology.Nodes))
	p.diskAt = make([]int32, len(p.Topology.Nodes))
	first := map[string]int32{}
	for n := range p.Topology.Nodes {
		p.diskAt[n] = int32(n)
		d, ok := byNode[p.Topology.Nodes[n].Name]
		if !ok {
			continue
		}
		p.Disk[n] = &d
		if d.Shared == "" {
			continue
		}
		if f, seen := first[d.Shared]; seen {
			p.diskAt[n] = f
		} else {
			first[d.Shared] = int32(n)
		}
	}
}

// planned is what this plan put on node n's disk (the first node of a
// shared disk keeps the count for all of them).
func (pl *planner) planned(n int) int64 { return pl.nodes[pl.p.diskNode(n)].disk }

// diskNode is the node whose state counts what a plan puts on n's disk.
func (p *Problem) diskNode(n int) int {
	if n < len(p.diskAt) {
		return int(p.diskAt[n])
	}
	return n
}

// charge is the bytes of new volumes replica ord of w creates on its
// node, and the first of those volumes: the unbound instances it mounts.
// A shared (not perReplica) volume is charged to replica 0 only: every
// replica that mounts it goes to one node.
func (w *Workload) charge(ord int32) (int64, string) {
	var sum int64
	var first string
	for i, u := range w.Volumes {
		if u.Missing || !u.PerReplica && ord != 0 {
			continue
		}
		if int(ord) < len(w.Pinned) && w.Pinned[ord].Bound[i] {
			continue
		}
		if first == "" {
			first = u.Name
			if u.PerReplica {
				first = fmt.Sprintf("%s-%d", u.Name, ord)
			}
		}
		sum += u.Size
	}
	return sum, first
}

// diskOK reports whether node n has room for the new volumes of replica
// ord of w, after what this plan already put there.
func (pl *planner) diskOK(w int32, ord int32, n int) bool {
	if n >= len(pl.p.Disk) || pl.p.Disk[n] == nil {
		return true
	}
	need, _ := pl.p.Workloads[w].charge(ord)
	return need == 0 || need <= pl.p.Disk[n].Left()-pl.planned(n)
}

// describeDisk says why node n has no room for the new volumes of replica
// ord of w, and the fix.
func (pl *planner) describeDisk(w int32, ord int32, n int) string {
	wl := &pl.p.Workloads[w]
	d := pl.p.Disk[n]
	need, first := wl.charge(ord)
	name := pl.top.Nodes[n].Name
	left := max(0, d.Left()-pl.planned(n))
	var held []string
	if d.Bound > 0 {
		held = append(held, fmtBytes(d.Bound)+" bound to volumes")
	}
	if pl.planned(n) > 0 {
		held = append(held, fmtBytes(pl.planned(n))+" to volumes of this plan")
	}
	of := ""
	if len(held) > 0 {
		of = ", " + strings.Join(held, ", ")
	}
	what := "volume " + first
	if k := countNew(wl, ord); k > 1 {
		what = fmt.Sprintf("%d new volumes (%s, …)", k, first)
	}
	return fmt.Sprintf("%s needs %s of disk, node %s has %s left for volumes (%s free%s) (fix: a smaller spec.size of Volume %s, free disk in the volume directory of %s, or a node with more disk)",
		what, fmtBytes(need), name, fmtBytes(left), fmtBytes(d.Free), of, volumeOf(first, wl), name)
}

// countNew is how many unbound volumes replica ord of w creates.
func countNew(w *Workload, ord int32) int {
	k := 0
	for i, u := range w.Volumes {
		if u.Missing || !u.PerReplica && ord != 0 || int(ord) < len(w.Pinned) && w.Pinned[ord].Bound[i] {
			continue
		}
		k++
	}
	return k
}

// volumeOf is the Volume object an instance is made from.
func volumeOf(inst string, w *Workload) string {
	for _, u := range w.Volumes {
		if u.PerReplica && strings.HasPrefix(inst, u.Name+"-") {
			return u.Name
		}
	}
	return inst
}

func fmtBytes(b int64) string {
	const gi, mi = 1 << 30, 1 << 20
	switch {
	case b >= 10*gi:
		return fmt.Sprintf("%dGi", b/gi)
	case b >= gi:
		return fmt.Sprintf("%.1fGi", float64(b)/gi)
	case b >= mi:
		return fmt.Sprintf("%dMi", b/mi)
	}
	return resource.NewQuantity(b, resource.BinarySI).String()
}

// diskChange is the smallest change for a replica that only the disk
// filter keeps off some node: the node short of the least disk.
func (pl *planner) diskChange(w int32) string {
	best, short := -1, int64(0)
	for n := range pl.top.Nodes {
		if v := pl.evaluate(w, n, false); v.filter != fDisk {
			continue
		}
		need, _ := pl.p.Workloads[w].charge(pl.ord)
		s := need - (pl.p.Disk[n].Left() - pl.planned(n))
		if best < 0 || s < short {
			best, short = n, s
		}
	}
	if best < 0 {
		return ""
	}
	_, first := pl.p.Workloads[w].charge(pl.ord)
	return fmt.Sprintf("free %s more disk for volumes on node %s, or make Volume %s's spec.size smaller", fmtBytes(short), pl.top.Nodes[best].Name, volumeOf(first, &pl.p.Workloads[w]))
}
