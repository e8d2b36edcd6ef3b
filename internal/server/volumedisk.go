package server

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
)

// PublishLocalDisk sets the room for volumes of `rung up`'s own node agent
// (remote agents send theirs with heartbeats); nil: unknown.
func (s *Server) PublishLocalDisk(d *wire.VolumeDisk) {
	if d != nil && checkDisk(d) != nil {
		return
	}
	s.nodes.mu.Lock()
	s.nodes.localDisk = d
	s.nodes.mu.Unlock()
}

// checkDisk refuses a report that can't be right.
func checkDisk(d *wire.VolumeDisk) error {
	if d.Capacity < 0 || d.Free < 0 || d.Held < 0 {
		return fmt.Errorf("volumeDisk: capacity, free and held are byte counts, never negative")
	}
	return nil
}

// diskReports are the nodes' rooms for volumes: by node for the agents
// that report one, and all for every other node when this process's
// agent stands for them.
type diskReports struct {
	byNode map[string]wire.VolumeDisk
	all    *wire.VolumeDisk
}

// disks returns what the agents report now; n.mu must be held.
func (n *nodes) disksLocked() diskReports {
	r := diskReports{byNode: map[string]wire.VolumeDisk{}}
	for name, b := range n.seen {
		if b.hb.VolumeDisk != nil {
			r.byNode[name] = *b.hb.VolumeDisk
		}
	}
	if n.localKnown && n.localDisk != nil {
		if n.localNode != "" {
			r.byNode[n.localNode] = *n.localDisk
		} else {
			r.all = n.localDisk
		}
	}
	return r
}

// diskGrain is the coarsest change of a node's free disk that makes the
// planner plan again: every write to a volume changes it a little.
const diskGrain = 64 << 20

// digest writes the reports, rounded to diskGrain, to h.
func (r diskReports) digest(h io.Writer) {
	for _, n := range slices.Sorted(maps.Keys(r.byNode)) {
		d := r.byNode[n]
		fmt.Fprintf(h, "disk\x00%s\x00%d\x00", n, (d.Free+d.Held)/diskGrain)
	}
	if r.all != nil {
		fmt.Fprintf(h, "disk-all\x00%d\x00", (r.all.Free+r.all.Held)/diskGrain)
	}
}

// volumeDisks is the scheduler's view of the nodes' disks: what each node
// reports, less the full size of the volumes bound to it. One machine
// standing for every node (r.all) has one disk: every volume bound to
// any of those nodes, or placed on one by the plan, counts against each.
func volumeDisks(set *v1.Set, bound map[string]string, r diskReports, nodes []string) map[string]scheduler.Disk {
	sizes := map[string]int64{} // TENANT/NAME → bytes
	for _, vol := range set.Volumes {
		sizes[vol.Metadata.Tenant+"/"+vol.Metadata.Name] = vol.Spec.SizeBytes()
	}
	byNode := map[string]int64{}
	var shared int64 // bound to nodes r.all stands for
	for key, node := range bound {
		size := instanceSize(key, sizes)
		byNode[node] += size
		if _, own := r.byNode[node]; !own {
			shared += size
		}
	}
	out := map[string]scheduler.Disk{}
	for _, n := range nodes {
		if d, ok := r.byNode[n]; ok {
			out[n] = scheduler.Disk{Free: d.Free + d.Held, Bound: byNode[n]}
		} else if r.all != nil {
			out[n] = scheduler.Disk{Free: r.all.Free + r.all.Held, Bound: shared, Shared: "local"}
		}
	}
	return out
}

// instanceSize is the size of volume instance TENANT/INST: a Volume's, or
// the Volume a perReplica instance NAME-ORD is made from.
func instanceSize(key string, sizes map[string]int64) int64 {
	if s, ok := sizes[key]; ok {
		return s
	}
	tenant, inst, _ := strings.Cut(key, "/")
	for id, s := range sizes {
		t, name, _ := strings.Cut(id, "/")
		if t == tenant && isInstanceOf(inst, name) {
			return s
		}
	}
	return 0
}
