package runtime

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes orphans of this process's children (the container
// and sandbox processes left by `runc create` / `runsc create`) children of
// this process instead of init, so that their exit status reaches us.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// reap waits for p.pid and records how it ended. It only ever waits for
// that one PID, so it does not steal statuses from os/exec.
func (p *proc) reap(log *slog.Logger) {
	defer close(p.done)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(p.pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Not our child (the driver process was not the subreaper when
			// the CLI exited, or the PID was adopted): fall back to polling.
			log.Debug("wait4 failed; polling for exit", "pid", p.pid, "err", err)
			for alive(p.pid) {
				time.Sleep(100 * time.Millisecond)
			}
			p.exit = Exit{Code: -1, At: time.Now()}
			return
		}
		break
	}
	p.exit = exitOf(ws)
}

// sweepOrphans reaps zombie children that no one waits for: processes of a
// container or sandbox that outlived its init or sentry (gVisor's ptrace
// stubs, processes of a dying PID namespace) and were re-parented to this
// subreaper. To leave os/exec's children and other drivers' tracked
// processes alone it only takes zombies that run in another session than
// this process and that have stayed zombies across two sweeps at least
// orphanGrace apart (a waiter blocked in wait4 reaps its child at once).
// It sweeps now and twice more in the background, then on while zombies
// it has seen wait for their grace (a sandbox's processes can die seconds
// after its delete), for at most maxSweeps more.
func (d *OCI) sweepOrphans() {
	go func() {
		for _, delay := range []time.Duration{0, orphanGrace + 100*time.Millisecond, 3 * orphanGrace} {
			time.Sleep(delay)
			d.sweepOnce()
		}
		for range maxSweeps {
			d.mu.Lock()
			pending := len(d.zombies)
			d.mu.Unlock()
			if pending == 0 {
				return
			}
			time.Sleep(orphanGrace)
			d.sweepOnce()
		}
	}()
}

const maxSweeps = 30

const orphanGrace = time.Second

func (d *OCI) sweepOnce() {
	self := os.Getpid()
	sid, err := unix.Getsid(0)
	if err != nil {
		return
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := statOf(pid)
		if !ok || st.state != 'Z' || st.ppid != self || st.sid == sid {
			delete(d.zombies, pid)
			continue
		}
		first, seen := d.zombies[pid]
		if !seen {
			d.zombies[pid] = now
			continue
		}
		if now.Sub(first) < orphanGrace {
			continue
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil || err == unix.ECHILD {
			delete(d.zombies, pid)
		}
	}
}

type procStat struct {
	state     byte
	ppid, sid int
}

// statOf reads state, parent and session from /proc/PID/stat.
func statOf(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 4 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	sid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], ppid: ppid, sid: sid}, true
}

func exitOf(ws unix.WaitStatus) Exit {
	e := Exit{At: time.Now()}
	switch {
	case ws.Signaled():
		e.Signal = syscall.Signal(ws.Signal())
		e.Code = 128 + int(ws.Signal())
	default:
		e.Code = ws.ExitStatus()
	}
	return e
}

func alive(pid int) bool {
	return unix.Kill(pid, 0) == nil
}

// adoptHelpers reaps the helper processes a runsc call leaves behind (the
// gofer, and a sandbox whose container was deleted) that became our
// children: without it they would stay zombies. Only processes whose
// command line names this driver's --root are touched.
func (d *OCI) adoptHelpers() {
	self := os.Getpid()
	marker := []byte("--root=" + d.state)
	marker2 := []byte(d.state)
	marker3 := []byte(d.boxes + "/") // boxed sandboxes' state (userns.go)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	tracked := map[int]bool{}
	for _, p := range d.procs {
		tracked[p.pid] = true
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || tracked[pid] || d.helpers[pid] {
			continue
		}
		if ppidOf(pid) != self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if !bytes.HasPrefix(cmdline, []byte("runsc-")) ||
			!(bytes.Contains(cmdline, marker) || bytes.Contains(cmdline, marker2) || bytes.Contains(cmdline, marker3)) {
			continue
		}
		d.helpers[pid] = true
		go func(pid int) {
			var ws unix.WaitStatus
			for {
				if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
					break
				}
			}
			d.mu.Lock()
			delete(d.helpers, pid)
			d.mu.Unlock()
		}(pid)
	}
}

// ppidOf returns the parent PID of pid, or -1.
func ppidOf(pid int) int {
	st, ok := statOf(pid)
	if !ok {
		return -1
	}
	return st.ppid
}
