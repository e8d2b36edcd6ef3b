// Package vminit is the init (PID 1) of a vm-tier guest, linked into the
// static rung-vm binary that rung puts in the guest's initramfs. It loads
// the kernel modules the initramfs carries (virtio, ext4: the distribution
// kernel builds them as modules), opens the channel to the agent, mounts
// the replica's root read-only from the first virtio disk, runs the
// workload as its user with its environment and working directory, sends
// its output and exit code back over the channel, and powers the guest off.
package vminit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/runtime/microvm/channel"
)

// Paths inside the initramfs (written by package guest).
const (
	ModulesDir  = "/lib/modules"
	ModulesLoad = "/lib/modules/load" // one .ko file name a line, dependencies first
	newRoot     = "/newroot"
	rootDisk    = "/dev/vda"
)

// Main runs the guest and never returns: it powers the guest off.
func Main() {
	err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "rung-vm: %v\n", err)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

type guest struct {
	port *os.File
	wmu  sync.Mutex // one frame at a time
	cfg  channel.Config

	// The reaper: init waits for every process (orphans are re-parented
	// to it) and hands each status to whoever started that PID.
	rmu     sync.Mutex
	waiters map[int]chan unix.WaitStatus
	early   map[int]unix.WaitStatus // statuses of PIDs not yet registered
}

func (g *guest) send(k channel.Kind, p []byte) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	return channel.Write(g.port, k, p)
}

func (g *guest) sendJSON(k channel.Kind, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return g.send(k, b)
}

func run() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	if err := loadModules(); err != nil {
		return err
	}
	port, err := openPort(30 * time.Second)
	if err != nil {
		return err
	}
	g := &guest{port: port}
	err = g.serve()
	if err != nil {
		_ = g.send(channel.KindError, []byte(err.Error()))
	}
	return err
}

// loadModules loads every module the initramfs lists, in order.
func loadModules() error {
	list, err := os.ReadFile(ModulesLoad)
	if err != nil {
		return fmt.Errorf("module list: %w", err)
	}
	for _, name := range strings.Fields(string(list)) {
		optional := strings.HasPrefix(name, "?") // a soft dependency: another module may serve
		name = strings.TrimPrefix(name, "?")
		f, err := os.Open(filepath.Join(ModulesDir, name))
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) && !optional {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

// openPort waits for the virtio-serial port named channel.PortName.
func openPort(timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		ents, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range ents {
			name, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if err == nil && strings.TrimSpace(string(name)) == channel.PortName {
				f, err := os.OpenFile(filepath.Join("/dev", e.Name()), os.O_RDWR, 0)
				if err == nil {
					return f, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port %q after %v", channel.PortName, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *guest) serve() error {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	h := channel.Hello{Release: unix.ByteSliceToString(uts.Release[:]), Version: unix.ByteSliceToString(uts.Version[:]), MemoryKiB: memTotal()}
	if err := g.sendJSON(channel.KindHello, h); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	k, p, err := channel.Read(g.port)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if k != channel.KindConfig {
		return fmt.Errorf("first frame %#x, want config", k)
	}
	var c channel.Config
	if err := json.Unmarshal(p, &c); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(c.Args) == 0 {
		return errors.New("config: no command")
	}
	if err := mountRoot(c); err != nil {
		return err
	}
	if err := mountVolumes(c); err != nil {
		return err
	}
	if err := configureNet(c.Net); err != nil {
		return err
	}
	if c.Hostname != "" {
		_ = unix.Sethostname([]byte(c.Hostname))
	}
	return g.runWorkload(c)
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// mountRoot mounts the replica's root read-only, and inside it a fresh
// /proc, a minimal /dev and a size-bounded /tmp where the image has them.
func mountRoot(c channel.Config) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(rootDisk); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no root disk %s", rootDisk)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(rootDisk, newRoot, "ext4", unix.MS_RDONLY|unix.MS_NODEV, "noload"); err != nil {
		return fmt.Errorf("mount root disk: %w", err)
	}
	isDir := func(p string) bool { fi, err := os.Stat(filepath.Join(newRoot, p)); return err == nil && fi.IsDir() }
	if isDir("proc") {
		if err := unix.Mount("proc", newRoot+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount /proc: %w", err)
		}
	}
	if isDir("dev") {
		if err := unix.Mount("tmpfs", newRoot+"/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
			return fmt.Errorf("mount /dev: %w", err)
		}
		for _, d := range []struct {
			name         string
			major, minor uint32
		}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}} {
			p := newRoot + "/dev/" + d.name
			if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
				return fmt.Errorf("mknod %s: %w", p, err)
			}
			_ = os.Chmod(p, 0o666)
		}
		_ = unix.Mount("", newRoot+"/dev", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "")
	}
	if isDir("tmp") {
		size := c.TmpMiB
		if size <= 0 {
			size = 16
		}
		if err := unix.Mount("tmpfs", newRoot+"/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=1777,size=%dm", size)); err != nil {
			return fmt.Errorf("mount /tmp: %w", err)
		}
	}
	return nil
}

// lookPath finds args[0] inside the new root, as a shell would with env's
// PATH.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(filepath.Join(newRoot, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in $PATH", file)
}

// start starts args in the workload's context (its root, user,
// environment and working directory), output to the given writers, and
// returns a channel that gets its wait status.
func (g *guest) start(args []string, stdout, stderr *os.File) (int, <-chan unix.WaitStatus, error) {
	c := g.cfg
	path, err := lookPath(args[0], c.Env)
	if err != nil {
		return 0, nil, err
	}
	cwd := c.Cwd
	if cwd == "" {
		cwd = "/"
	}
	cmd := &exec.Cmd{
		Path: path, Args: args, Env: c.Env, Dir: cwd,
		Stdout: stdout, Stderr: stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:     newRoot,
			Credential: &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups},
			Setsid:     true,
		},
	}
	ch := make(chan unix.WaitStatus, 1)
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	pid := cmd.Process.Pid
	if ws, ok := g.early[pid]; ok {
		delete(g.early, pid)
		ch <- ws
	} else {
		g.waiters[pid] = ch
	}
	return pid, ch, nil
}

// reap waits for every child and hands out their statuses.
func (g *guest) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.ECHILD) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			return
		}
		g.rmu.Lock()
		if ch, ok := g.waiters[pid]; ok {
			delete(g.waiters, pid)
			ch <- ws
		} else if len(g.early) < 1024 {
			g.early[pid] = ws
		}
		g.rmu.Unlock()
	}
}

func exitOf(ws unix.WaitStatus) channel.Exit {
	if ws.Signaled() {
		return channel.Exit{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return channel.Exit{Code: ws.ExitStatus()}
}

// pump sends what r gives as frames of kind k (tagged with an exec ID
// when tag is set) until r ends.
func (g *guest) pump(r *os.File, k channel.Kind, tag *uint32, wg *sync.WaitGroup) {
	defer wg.Done()
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p := buf[:n]
			if tag != nil {
				p = channel.Tagged(*tag, p)
			}
			_ = g.send(k, p)
		}
		if err != nil {
			return
		}
	}
}

// drain waits for the output pumps, but not for long: a daemonized child
// holding the pipes is not waited for.
func drain(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// runWorkload runs the workload and reports its output and exit.
func (g *guest) runWorkload(c channel.Config) error {
	g.cfg = c
	g.waiters, g.early = map[int]chan unix.WaitStatus{}, map[int]unix.WaitStatus{}
	go g.reap()
	stdout, ow, err := os.Pipe()
	if err != nil {
		return err
	}
	stderr, ew, err := os.Pipe()
	if err != nil {
		return err
	}
	// The workload can't gain privileges (setuid files, file capabilities).
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	pid, status, err := g.start(c.Args, ow, ew)
	ow.Close()
	ew.Close()
	if err != nil {
		return err
	}
	_ = g.sendJSON(channel.KindStarted, channel.Started{Pid: pid})
	var copies sync.WaitGroup
	copies.Add(2)
	go g.pump(stdout, channel.KindStdout, nil, &copies)
	go g.pump(stderr, channel.KindStderr, nil, &copies)
	go g.commands(pid)
	ws := <-status
	drain(&copies)
	return g.sendJSON(channel.KindExit, exitOf(ws))
}

// exec runs one exec request and reports its output and exit.
func (g *guest) exec(id uint32, args []string) {
	fail := func(code int, msg string) {
		_ = g.send(channel.KindExecStderr, channel.Tagged(id, []byte(msg+"\n")))
		b, _ := json.Marshal(channel.Exit{Code: code})
		_ = g.send(channel.KindExecExit, channel.Tagged(id, b))
	}
	if len(args) == 0 {
		fail(126, "exec: no command")
		return
	}
	or, ow, err := os.Pipe()
	if err != nil {
		fail(126, err.Error())
		return
	}
	er, ew, err := os.Pipe()
	if err != nil {
		fail(126, err.Error())
		return
	}
	_, status, err := g.start(args, ow, ew)
	ow.Close()
	ew.Close()
	if err != nil {
		or.Close()
		er.Close()
		code := 126
		if strings.Contains(err.Error(), "not found") || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		fail(code, err.Error())
		return
	}
	var copies sync.WaitGroup
	copies.Add(2)
	go g.pump(or, channel.KindExecStdout, &id, &copies)
	go g.pump(er, channel.KindExecStderr, &id, &copies)
	ws := <-status
	drain(&copies)
	b, _ := json.Marshal(exitOf(ws))
	_ = g.send(channel.KindExecExit, channel.Tagged(id, b))
}

// commands serves the host's frames while the workload runs: signals
// for it, and execs.
func (g *guest) commands(pid int) {
	for {
		k, p, err := channel.Read(g.port)
		if err != nil {
			if errors.Is(err, io.EOF) {
				time.Sleep(100 * time.Millisecond) // host disconnected; it may come back
				continue
			}
			return
		}
		switch {
		case k == channel.KindSignal && len(p) == 1:
			_ = unix.Kill(pid, unix.Signal(p[0]))
		case k == channel.KindResume:
			// A new host (a restarted agent) took over: mark where its
			// stream begins.
			_ = g.send(channel.KindResumed, p)
		case k == channel.KindExec:
			id, rest, ok := channel.Untag(p)
			var args []string
			if ok && json.Unmarshal(rest, &args) == nil {
				go g.exec(id, args)
			}
		}
	}
}
