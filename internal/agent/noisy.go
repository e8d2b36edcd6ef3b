package agent

import (
	"context"
	"runtime"
	"sync"
	"syscall"
	"time"

	"rung.dev/rung/internal/noisy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/server/wire"
)

// CgroupNode is a node whose replicas' cgroups the agent reads and sets
// (replica.Node is one): the noisy-neighbour monitor needs it.
type CgroupNode interface {
	UsageOf(tenant, id string) (replica.Usage, error)
	// CPUUsageOf reads only the CPU counters: the per-tick path.
	CPUUsageOf(tenant, id string) (replica.Usage, error)
	SetCPU(tenant, id string, milli int64) error
}

// fullEvery is how many ticks apart the monitor reads the files the
// detector does not need (memory, OOM kills, tasks, block I/O): they are
// reported, not acted on, and skipping them keeps the monitor under 1% of
// a core at 100 replicas.
const fullEvery = 5

// monitor is the agent's noisy-neighbour monitor (DESIGN §12): every
// policy interval it samples the running replicas' cgroups and the node's
// pressure, runs the detector and applies its steps.
type monitor struct {
	mu  sync.Mutex
	det *noisy.Detector
	pol noisy.Policy
	// prev are the last samples, by replica; node the node's stall.
	prev     map[string]replica.Usage
	nodeAt   time.Time
	nodeStal time.Duration
	pressure float64 // the node's over the last interval; -1 unknown
	// limits are the CPU quotas to give back to throttled replicas.
	limits map[string]int64
	// steps are each replica's last steps; unsent the steps not yet
	// taken for the control plane (audit, moves).
	steps  map[string][]wire.NoisyStep
	unsent []wire.NoisyStep
	// cpu is the CPU time the monitor's ticks used, ticks their count.
	cpu   time.Duration
	ticks int
	// usage is each replica's usage as the last tick computed it, at
	// usageAt: Statuses reports it instead of reading the cgroups again.
	usage   map[string]wire.Usage
	usageAt time.Time
	n       int // ticks run, for fullEvery
}

func newMonitor() *monitor {
	return &monitor{prev: map[string]replica.Usage{}, limits: map[string]int64{}, steps: map[string][]wire.NoisyStep{}, pressure: -1, usage: map[string]wire.Usage{}}
}

// maxUnsentSteps bounds the steps kept while the control plane is away.
const maxUnsentSteps = 256

// watched is one running replica as the monitor sees it.
type watched struct {
	id, tenant     string
	request, limit int64
}

// requestAndLimit are a spec's CPU request and limit in millicores, with
// the node's default request (replica.withDefaults).
func requestAndLimit(s replica.Spec) (int64, int64) {
	req := s.Resources.MilliCPU
	if req <= 0 {
		req = 1000
	}
	lim := req
	if s.Limits != nil && s.Limits.MilliCPU > req {
		lim = s.Limits.MilliCPU
	}
	return req, lim
}

// running lists the running replicas and the site's policy (nil: none).
func (a *Agent) running() ([]watched, *noisy.Policy) {
	a.tr.mu.Lock()
	defer a.tr.mu.Unlock()
	var out []watched
	var pol *noisy.Policy
	for id, l := range a.tr.lives {
		if l.State != wire.ReplicaRunning && l.State != wire.ReplicaStarting {
			continue
		}
		req, lim := requestAndLimit(l.spec)
		out = append(out, watched{id: id, tenant: l.tenant, request: req, limit: lim})
		if pol == nil && l.spec.Noisy != nil {
			pol = l.spec.Noisy
		}
	}
	return out, pol
}

// MonitorOnce samples every running replica and the node, runs the
// detector under the site's policy and applies its steps. It returns
// the steps taken. The node must be a CgroupNode (else nothing happens).
func (a *Agent) MonitorOnce(ctx context.Context) []wire.NoisyStep {
	cn, ok := a.node.(CgroupNode)
	if !ok {
		return nil
	}
	// The monitor's own cost, for `rung bench noisy` (≤ 1% of a core at
	// 100 replicas): the thread's CPU time around the tick.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r0, r1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &r0)
	steps := a.monitorTick(ctx, cn)
	_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &r1)
	m := a.mon
	m.mu.Lock()
	m.cpu += time.Duration(r1.Utime.Nano()-r0.Utime.Nano()) + time.Duration(r1.Stime.Nano()-r0.Stime.Nano())
	m.ticks++
	m.mu.Unlock()
	return steps
}

func (a *Agent) monitorTick(ctx context.Context, cn CgroupNode) []wire.NoisyStep {
	reps, pol := a.running()
	m := a.mon
	m.mu.Lock()
	defer m.mu.Unlock()
	now := a.now()
	if stall := replica.NodeStall(); stall >= 0 {
		if !m.nodeAt.IsZero() && now.After(m.nodeAt) && stall >= m.nodeStal {
			m.pressure = float64(stall-m.nodeStal) / float64(now.Sub(m.nodeAt))
		}
		m.nodeAt, m.nodeStal = now, stall
	}
	samples := make([]noisy.Sample, 0, len(reps))
	byID := make(map[string]watched, len(reps))
	seen := make(map[string]bool, len(reps))
	full := m.n%fullEvery == 0
	m.n++
	for _, w := range reps {
		prev, had := m.prev[w.id]
		var u replica.Usage
		var err error
		if full || !had {
			u, err = cn.UsageOf(w.tenant, w.id)
		} else {
			u, err = cn.CPUUsageOf(w.tenant, w.id)
			u.Memory, u.OOMKills, u.PIDs, u.ReadBytes, u.WriteBytes = prev.Memory, prev.OOMKills, prev.PIDs, prev.ReadBytes, prev.WriteBytes
		}
		if err != nil {
			continue
		}
		seen[w.id] = true
		m.prev[w.id] = u
		wu := wire.Usage{Memory: u.Memory, PIDs: u.PIDs, CPUSeconds: u.CPU.Seconds(), ThrottledSeconds: u.ThrottledTime.Seconds(),
			OOMKills: u.OOMKills, ReadBytes: u.ReadBytes, WriteBytes: u.WriteBytes}
		if !had || !u.At.After(prev.At) || u.CPU < prev.CPU {
			// The first sample only sets the baseline. A counter that went
			// back is a new cgroup (a restart): its quota is the limit
			// again, and the detector forgets it (no sample this tick).
			if had && u.CPU < prev.CPU {
				delete(m.limits, w.id)
			}
			m.usage[w.id] = wu
			continue
		}
		dt := u.At.Sub(prev.At)
		s := noisy.Sample{ID: w.id, Request: w.request, Limit: w.limit, Pressure: -1,
			Used: int64(u.CPU-prev.CPU) * 1000 / int64(dt)}
		if dp := u.Periods - prev.Periods; dp > 0 {
			s.Throttled = float64(u.Throttled-prev.Throttled) / float64(dp)
		}
		if u.Stall >= 0 && prev.Stall >= 0 && u.Stall >= prev.Stall {
			s.Pressure = float64(u.Stall-prev.Stall) / float64(dt)
			p := s.Pressure
			wu.Pressure = &p
		}
		wu.MilliCPU, wu.Throttled = s.Used, s.Throttled
		m.usage[w.id] = wu
		samples = append(samples, s)
		byID[w.id] = w
	}
	m.usageAt = now
	for id := range m.prev {
		if !seen[id] {
			delete(m.prev, id)
			delete(m.limits, id)
			delete(m.steps, id)
			delete(m.usage, id)
		}
	}
	if pol == nil || m.det != nil && !samePolicy(m.pol, *pol) {
		// No ladder any more, or a new one: whoever the old one held at
		// its request gets its limit back; the new ladder starts afresh.
		for id, lim := range m.limits {
			if w, ok := byID[id]; ok {
				if err := cn.SetCPU(w.tenant, id, lim); err != nil {
					a.log.Warn("noisy neighbour: release on a policy change failed", "replica", id, "err", err)
				}
			}
			delete(m.limits, id)
		}
		m.det = nil
	}
	if pol == nil {
		return nil
	}
	if m.det == nil {
		m.det, m.pol = noisy.New(*pol), *pol
	}
	var out []wire.NoisyStep
	for _, st := range m.det.Observe(noisy.Node{Pressure: m.pressure}, samples) {
		w := byID[st.ID]
		ws := wire.NoisyStep{At: now.UTC(), Replica: st.ID, Tenant: w.tenant, Action: string(st.Action), Reason: st.Reason(),
			UsedMilliCPU: st.Figures.Used, RequestMilliCPU: st.Figures.Request, Victim: st.Figures.Victim,
			Starved: st.Figures.Starved, Threshold: st.Figures.Threshold}
		var err error
		switch st.Action {
		case noisy.Throttle:
			m.limits[st.ID] = w.limit
			err = cn.SetCPU(w.tenant, st.ID, w.request)
		case noisy.Release:
			err = cn.SetCPU(w.tenant, st.ID, w.limit)
			delete(m.limits, st.ID)
		}
		if err != nil {
			ws.Error = err.Error()
			a.log.Warn("noisy neighbour: step failed", "replica", st.ID, "action", st.Action, "err", err)
		} else {
			a.log.Info("noisy neighbour", "replica", st.ID, "action", st.Action, "why", ws.Reason)
		}
		out = append(out, ws)
		steps := append(m.steps[st.ID], ws)
		m.steps[st.ID] = steps[max(0, len(steps)-wire.MaxNoisySteps):]
	}
	m.unsent = append(m.unsent, out...)
	m.unsent = m.unsent[max(0, len(m.unsent)-maxUnsentSteps):]
	_ = ctx
	return out
}

func samePolicy(a, b noisy.Policy) bool {
	if a.Threshold != b.Threshold || a.Interval != b.Interval || a.Hold != b.Hold || a.Calm != b.Calm || len(a.Actions) != len(b.Actions) {
		return false
	}
	for i := range a.Actions {
		if a.Actions[i] != b.Actions[i] {
			return false
		}
	}
	return true
}

// RunMonitor runs the noisy-neighbour monitor at the site policy's
// interval (noisy.DefaultInterval without one) until ctx ends.
func (a *Agent) RunMonitor(ctx context.Context) {
	if _, ok := a.node.(CgroupNode); !ok {
		return
	}
	for {
		a.MonitorOnce(ctx)
		interval := noisy.DefaultInterval
		if _, pol := a.running(); pol != nil && pol.Interval > 0 {
			interval = pol.Interval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// NoisySteps returns the ladder steps not taken yet, oldest first, at
// most n (the control plane audits them; a move step re-places the
// replica). Ack drops the first k once delivered.
func (a *Agent) NoisySteps(n int) []wire.NoisyStep {
	a.mon.mu.Lock()
	defer a.mon.mu.Unlock()
	return append([]wire.NoisyStep(nil), a.mon.unsent[:min(n, len(a.mon.unsent))]...)
}

// AckNoisySteps drops the first k unsent steps (delivered).
func (a *Agent) AckNoisySteps(k int) {
	a.mon.mu.Lock()
	defer a.mon.mu.Unlock()
	a.mon.unsent = a.mon.unsent[min(k, len(a.mon.unsent)):]
}

// MonitorCost is the CPU time the monitor's ticks used and their count.
func (a *Agent) MonitorCost() (time.Duration, int) {
	a.mon.mu.Lock()
	defer a.mon.mu.Unlock()
	return a.mon.cpu, a.mon.ticks
}

// NodePressure is the node's CPU pressure over the monitor's last
// interval (a fraction), or -1.
func (a *Agent) NodePressure() float64 {
	a.mon.mu.Lock()
	defer a.mon.mu.Unlock()
	return a.mon.pressure
}

// monitorUsage is replica id's usage as the monitor last computed it, or
// nil when the monitor has not run lately (then Statuses reads it).
func (a *Agent) monitorUsage(id string) *wire.Usage {
	a.mon.mu.Lock()
	defer a.mon.mu.Unlock()
	interval := noisy.DefaultInterval
	if a.mon.det != nil {
		interval = a.mon.pol.WithDefaults().Interval
	}
	u, ok := a.mon.usage[id]
	if !ok || a.now().Sub(a.mon.usageAt) > 3*interval {
		return nil
	}
	return &u
}

// noisyOf is replica id's ladder state for its status.
func (a *Agent) noisyOf(id string) (bool, []wire.NoisyStep) {
	a.mon.mu.Lock()
	defer a.mon.mu.Unlock()
	_, throttled := a.mon.limits[id]
	return throttled, append([]wire.NoisyStep(nil), a.mon.steps[id]...)
}
