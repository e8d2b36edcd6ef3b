package agent

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"sync"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
)

// Exiter is a node that can tell how a stopped replica's process ended
// (replica.Node does); without it, exit codes are unknown.
type Exiter interface {
	Exit(ctx context.Context, id string) (runtime.Exit, error)
}

// Execer is a node that runs commands inside its running replicas
// (replica.Node does): health checks and `rung exec`.
type Execer interface {
	Exec(ctx context.Context, id string, args []string, stdio runtime.ExecIO) (int, error)
}

// life is what the agent knows of one replica beyond its runtime state:
// the status it reports (DESIGN §8).
type life struct {
	wire.ReplicaStatus
	tenant, tier string
	// attempts counts starts; restarts are the attempts after the first.
	attempts int
	// failing is true after a failed start or an exit, until a start
	// succeeds: the next start waits for the back-off.
	failing bool
	// health check state (health.go).
	health *prober
	// exitSeen is the exit (FinishedAt) already accounted for.
	exitSeen time.Time
	// cpu is the last CPU sample, for the CPU used between two reports.
	cpu replica.Usage
	// spec is the replica's spec (requests, limits, the noisy policy).
	spec replica.Spec
}

// Usager is a node that reads what its replicas use (replica.Node does).
type Usager interface {
	UsageOf(tenant, id string) (replica.Usage, error)
}

// sampleUsage reads id's usage into l: CPU as the share used since the
// previous sample, in thousandths of a core. l's tracker lock is held.
func (a *Agent) sampleUsage(id string, l *life) {
	un, ok := a.node.(Usager)
	if !ok {
		return
	}
	u, err := un.UsageOf(l.tenant, id)
	if err != nil {
		l.Usage = nil
		return
	}
	out := &wire.Usage{Memory: u.Memory, PIDs: u.PIDs, CPUSeconds: u.CPU.Seconds(), ThrottledSeconds: u.ThrottledTime.Seconds(),
		OOMKills: u.OOMKills, ReadBytes: u.ReadBytes, WriteBytes: u.WriteBytes}
	if prev := l.cpu; !prev.At.IsZero() && u.At.After(prev.At) && u.CPU >= prev.CPU {
		dt := u.At.Sub(prev.At)
		out.MilliCPU = int64(u.CPU-prev.CPU) * 1000 / int64(dt)
		if dp := u.Periods - prev.Periods; dp > 0 {
			out.Throttled = float64(u.Throttled-prev.Throttled) / float64(dp)
		}
		if u.Stall >= 0 && prev.Stall >= 0 && u.Stall >= prev.Stall {
			p := float64(u.Stall-prev.Stall) / float64(dt)
			out.Pressure = &p
		}
	}
	l.cpu, l.Usage = u, out
}

// tracker keeps the lives of this node's replicas, by ID.
type tracker struct {
	mu    sync.Mutex
	lives map[string]*life
	// keep, when the node has one, holds each life across agent restarts.
	keep statusKeeper
}

// statusKeeper is a node that keeps the agent's notes about each
// replica's life (replica.Node does, under its data directory).
type statusKeeper interface {
	SaveStatus(id string, data []byte) error
	LoadStatus(id string) ([]byte, error)
	DeleteStatus(id string) error
}

// kept is what outlives the agent of a replica's life.
type kept struct {
	wire.ReplicaStatus
	Attempts int  `json:"attempts"`
	Failing  bool `json:"failing,omitempty"`
}

// get returns id's life for spec s, new when unknown or when s's hash
// differs (a changed spec is a new replica). A life the node kept from
// an earlier agent for the same spec is taken up again.
func (t *tracker) get(s replica.Spec) *life {
	l := t.lives[s.ID]
	hash := Hash(s)
	if l == nil || l.Hash != hash {
		if l != nil && l.health != nil {
			l.health.stop()
		}
		l = &life{ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaAdmitted, Health: wire.HealthNone, Hash: hash}, tenant: s.Tenant, tier: s.Tier.String(), spec: s}
		if t.keep != nil {
			var k kept
			if b, err := t.keep.LoadStatus(s.ID); err == nil && json.Unmarshal(b, &k) == nil && k.Hash == hash {
				l.ReplicaStatus, l.attempts, l.failing = k.ReplicaStatus, k.Attempts, k.Failing
				l.Usage = nil
			}
		}
		t.lives[s.ID] = l
	}
	l.spec = s // the noisy policy is not in the hash: it changes in place
	return l
}

// save keeps id's life on the node (best effort: a failure only loses
// history).
func (t *tracker) save(id string, l *life) {
	if t.keep == nil {
		return
	}
	k := kept{ReplicaStatus: l.ReplicaStatus, Attempts: l.attempts, Failing: l.failing}
	k.Usage, k.Noisy, k.Throttled = nil, nil, false
	if b, err := json.Marshal(k); err == nil {
		_ = t.keep.SaveStatus(id, b)
	}
}

func (t *tracker) forget(id string) {
	if l := t.lives[id]; l != nil && l.health != nil {
		l.health.stop()
	}
	delete(t.lives, id)
	if t.keep != nil {
		_ = t.keep.DeleteStatus(id)
	}
}

// restartWanted applies the restart policy to an exit code.
func restartWanted(p v1.RestartPolicy, code int) bool {
	switch p {
	case v1.RestartNever:
		return false
	case v1.RestartOnFailure:
		return code != 0
	}
	return true
}

// finalState is the state of a replica that stopped and won't restart.
func finalState(code int) string {
	if code == 0 {
		return wire.ReplicaSucceeded
	}
	return wire.ReplicaFailed
}

var (
	// runc: exec: "/bin/srv": stat /bin/srv: no such file or directory;
	// exec: "srv": executable file not found in $PATH.
	execNotFoundRE = regexp.MustCompile(`exec: "([^"]+)": (?:stat [^:]+: no such file or directory|executable file not found in \$PATH)`)
	// runsc: error finding executable "srv" in PATH [...]: no such file;
	// failed to load /bin/srv: no such file or directory.
	runscNotFoundRE = regexp.MustCompile(`error finding executable "([^"]+)"|failed to load (\S+): no such file or directory`)
	replicaPrefixRE = regexp.MustCompile(`^replica [a-z0-9-]+: `)
)

// maxLastError bounds a reported error message.
const maxLastError = 1024

// plain says err in words a tenant can act on: a missing executable is
// "executable /bin/srv not found in image"; other messages lose the
// replica ID the user already knows.
func plain(err error) string {
	msg := err.Error()
	if m := execNotFoundRE.FindStringSubmatch(msg); m != nil {
		return "executable " + m[1] + " not found in image"
	}
	if m := runscNotFoundRE.FindStringSubmatch(msg); m != nil {
		return "executable " + m[1] + m[2] + " not found in image"
	}
	msg = replicaPrefixRE.ReplaceAllString(msg, "")
	if len(msg) > maxLastError {
		msg = msg[:maxLastError] + "…"
	}
	return msg
}

// exitOf returns how id's last process ended, when the node can tell.
func (a *Agent) exitOf(ctx context.Context, id string) (runtime.Exit, bool) {
	ex, ok := a.node.(Exiter)
	if !ok {
		return runtime.Exit{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e, err := ex.Exit(ctx, id)
	if err != nil {
		if errors.Is(err, runtime.ErrExitUnknown) {
			return runtime.Exit{Code: -1, At: e.At}, true
		}
		return runtime.Exit{}, false
	}
	return e, true
}

// exitMessage says how a process ended.
func exitMessage(code int) string {
	switch {
	case code < 0:
		return "stopped while the agent was away; exit code unknown"
	case code > 128 && code < 128+65:
		return "killed by signal " + sigName(code-128)
	}
	return "exited with code " + strconv.Itoa(code)
}

func sigName(n int) string {
	switch n {
	case 9:
		return "KILL (out of memory, or killed)"
	case 15:
		return "TERM"
	case 6:
		return "ABRT"
	case 11:
		return "SEGV"
	}
	return strconv.Itoa(n)
}

// Statuses returns the life of every replica this agent tracks, by ID.
func (a *Agent) Statuses() map[string]wire.ReplicaState {
	a.tr.mu.Lock()
	defer a.tr.mu.Unlock()
	out := make(map[string]wire.ReplicaState, len(a.tr.lives))
	for id, l := range a.tr.lives {
		if l.State == wire.ReplicaRunning || l.State == wire.ReplicaStarting {
			if u := a.monitorUsage(id); u != nil {
				l.Usage = u // the monitor read it this interval
			} else {
				a.sampleUsage(id, l)
			}
		} else {
			l.Usage, l.cpu = nil, replica.Usage{}
		}
		st := l.ReplicaStatus
		if l.health != nil {
			st.Health = l.health.verdict()
		}
		st.State = stateWithHealth(st.State, st.Health)
		st.Throttled, st.Noisy = a.noisyOf(id)
		out[id] = wire.ReplicaState{ID: id, Tenant: l.tenant, Tier: l.tier, ReplicaStatus: st}
	}
	return out
}

// stateWithHealth refines a running replica's state by its health check.
func stateWithHealth(state, health string) string {
	if state != wire.ReplicaRunning && state != wire.ReplicaStarting {
		return state
	}
	switch health {
	case wire.HealthStarting:
		return wire.ReplicaStarting
	case wire.HealthUnhealthy:
		return wire.ReplicaUnhealthy
	}
	return wire.ReplicaRunning
}
