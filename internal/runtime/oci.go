package runtime

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/logfile"
)

// Config configures an OCI driver.
type Config struct {
	// Binary is the runtime executable, a path or a name looked up in PATH;
	// default "runc" or "runsc".
	Binary string
	// Dir is the driver's directory: the runtime's --root state lives in
	// Dir/state, replica logs in Dir/logs (both 0700), probe bundles in
	// Dir/probe-*. Dir is created 0711 if missing.
	Dir string
	// Platform is runsc's --platform (default "ptrace"). runsc only.
	Platform string
	// Network is runsc's --network (default "none": loopback only). runsc
	// only.
	Network string
	// NoOCISeccomp turns off runsc's --oci-seccomp, which makes gVisor's
	// kernel enforce the spec's seccomp filter on the workload too. runsc
	// only; leave it false.
	NoOCISeccomp bool
	// ExtraFlags are global flags added to every call (after the driver's).
	ExtraFlags []string
	// Logger receives the driver's debug and warning records; nil discards.
	Logger *slog.Logger
	// LogMaxSize caps each replica's current log file (one rotated
	// segment is kept besides); 0 is logfile.DefaultMaxSize.
	LogMaxSize int64
}

// OCI is a Driver for an OCI runtime CLI: runc or runsc. The two share
// this wrapper (state JSON, kill, delete, create/start); they differ in
// global flags and in which host process stands for the container.
//
// Bundles: the rootfs must be owned by the tenant's uid range
// (uidrange.Shift) and the bundle directory and its ancestors must be
// searchable (o+x) by that range, since runc's init and runsc's gofer open
// the rootfs from inside the user namespace.
//
// Exit statuses: the driver makes its process a child subreaper
// (PR_SET_CHILD_SUBREAPER), so the container process (runc) or sandbox
// process (runsc) that the CLI leaves behind becomes this process's child
// and is reaped here, as containerd's shim does. The status is held in
// memory: after a restart of this process, Wait on an adopted container
// reports ErrExitUnknown once it stops. Orphans that end up with this
// process (gVisor's ptrace stubs, processes of a dying PID namespace) are
// reaped by a sweep that only takes zombies of other sessions that nobody
// reaped for a second; a program embedding the driver should not start
// children with Setsid and leave them unwaited for that long.
type OCI struct {
	kind   string // "runc" or "runsc"
	tier   string
	bin    string // resolved path; "" if not found
	binErr error
	state  string // --root
	boxes  string // sandboxes in their tenants' user namespaces (userns.go)
	// nsenter, sleep and shell are what boxed sandboxes need (userns.go).
	nsenter, sleep, shell string
	scope                 string // see rid
	logs                  string
	log                   *slog.Logger
	logMax                int64

	// flags are the runtime's global flags but --root (globalFlags): the
	// driver's base flags, runsc's hardening flags once known (harden),
	// then Config.ExtraFlags.
	flagMu                sync.Mutex
	flags                 []string
	baseFlags, extraFlags []string
	hardened              bool

	mu       sync.Mutex
	procs    map[string]*proc
	creating map[string]bool
	helpers  map[int]bool      // runsc gofer and sandbox PIDs being reaped
	zombies  map[int]time.Time // orphaned zombies and when first seen
	// copiers copy replicas' FIFOs into their logs (logs.go).
	copiers   map[string]*copier
	adoptedAt time.Time

	detectMu sync.Mutex
	detected *Availability
}

// proc is a container process this driver is the parent of.
type proc struct {
	pid  int
	done chan struct{} // closed when reaped
	exit Exit
	// copies finish when the container closes its pipes (IO writers that
	// are not files).
	copies  sync.WaitGroup
	closers []io.Closer
}

// NewRunc returns the container-tier driver.
func NewRunc(cfg Config) (*OCI, error) {
	return newOCI("runc", "container", cfg, nil)
}

// NewRunsc returns the sandbox-tier driver (gVisor).
func NewRunsc(cfg Config) (*OCI, error) {
	platform, network := cfg.Platform, cfg.Network
	if platform == "" {
		platform = "ptrace"
	}
	if network == "" {
		network = "none"
	}
	flags := []string{"--platform=" + platform, "--network=" + network}
	if !cfg.NoOCISeccomp {
		flags = append(flags, "--oci-seccomp")
	}
	d, err := newOCI("runsc", "sandbox", cfg, flags)
	if err != nil || d.bin == "" {
		return d, err
	}
	// Asked now so that every call runs with them; if runsc can't be
	// asked, Create refuses and asks again.
	if err := d.harden(context.Background()); err != nil {
		d.log.Warn("runsc hardening flags unknown: sandboxes are refused until runsc answers", "runsc", d.bin, "err", err)
	}
	return d, nil
}

// ContainerID is the container ID a runtime's own ID stands for, for a
// listing of state directory state (see OCI.rid): runsc's IDs there carry
// the driver's scope.
func ContainerID(state, runtimeID string) string {
	scope, err := readScope(filepath.Join(filepath.Dir(state), scopeFile))
	if err != nil {
		// A boxed sandbox's state: DIR/sandboxes/ID/state (userns.go).
		if scope, err = readScope(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(state))), scopeFile)); err != nil {
			return runtimeID
		}
	}
	return strings.TrimSuffix(runtimeID, "."+scope)
}

// StateDirs returns the runtime state directories of the driver whose
// shared state directory is state (Config.Dir/state): that one, then the
// state directory of each sandbox run in its tenant's user namespace
// (Config.Dir/sandboxes/ID/state). Each can be listed as host root
// (`runsc --root DIR list`); BoxedBundle maps a listed bundle back.
func StateDirs(state string) []string {
	out := []string{state}
	recs, _ := filepath.Glob(filepath.Join(filepath.Dir(state), "sandboxes", "*.json"))
	for _, r := range recs {
		dir := filepath.Join(strings.TrimSuffix(r, ".json"), "state")
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			out = append(out, dir)
		}
	}
	return out
}

// BoxedBundle returns the replica's own bundle for the bundle a listing of
// a boxed sandbox's state directory reports (the spec made for runsc), or
// bundle itself.
func BoxedBundle(state, bundle string) string {
	if filepath.Base(state) != "state" || !strings.HasSuffix(bundle, ".bundle") {
		return bundle
	}
	b, err := os.ReadFile(strings.TrimSuffix(bundle, ".bundle") + ".json")
	if err != nil {
		return bundle
	}
	var bx box
	if json.Unmarshal(b, &bx) != nil || bx.Bundle == "" {
		return bundle
	}
	return bx.Bundle
}

// scopeFile holds a driver directory's scope: random, made once, so that
// it stays the same when the directory is moved or reached by another path.
const scopeFile = "scope"

func loadScope(dir string) (string, error) {
	p := filepath.Join(dir, scopeFile)
	if s, err := readScope(p); !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	buf := make([]byte, 4)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	// Written aside, then linked into place: link never replaces, so two
	// drivers opening the directory at once agree on the first one's, and
	// nobody reads a half-written file.
	tmp, err := os.CreateTemp(dir, ".scope-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(hex.EncodeToString(buf) + "\n"); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Link(tmp.Name(), p); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	return readScope(p)
}

func readScope(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	if s := strings.TrimSpace(string(b)); len(s) == 8 {
		return s, nil
	}
	return "", fmt.Errorf("%s: want 8 hex digits", p)
}

func newOCI(kind, tier string, cfg Config, flags []string) (*OCI, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%s driver: no directory", kind)
	}
	if cfg.LogMaxSize != 0 && cfg.LogMaxSize < logfile.MinMaxSize {
		return nil, fmt.Errorf("%s driver: LogMaxSize %d: at least %d bytes (or 0 for %d): %w",
			kind, cfg.LogMaxSize, logfile.MinMaxSize, logfile.DefaultMaxSize, logfile.ErrInvalid)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s driver: %w", kind, err)
	}
	d := &OCI{
		kind:     kind,
		tier:     tier,
		state:    filepath.Join(dir, "state"),
		boxes:    filepath.Join(dir, "sandboxes"),
		logs:     filepath.Join(dir, "logs"),
		log:      cfg.Logger,
		logMax:   cfg.LogMaxSize,
		copiers:  map[string]*copier{},
		procs:    map[string]*proc{},
		creating: map[string]bool{},
		helpers:  map[int]bool{},
		zombies:  map[int]time.Time{},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	// Dir is searchable (0711) so that probe bundles inside it can be opened
	// from the probe's user namespace; state and logs stay private.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("%s driver: %w", kind, err)
	}
	for _, p := range []string{d.state, d.logs} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("%s driver: %w", kind, err)
		}
	}
	if kind == "runsc" { // see rid: runc's IDs need no scope
		if d.scope, err = loadScope(dir); err != nil {
			return nil, fmt.Errorf("%s driver: scope: %w", kind, err)
		}
	}
	bin := cfg.Binary
	if bin == "" {
		bin = kind
	}
	d.bin, d.binErr = exec.LookPath(bin)
	if d.bin != "" {
		// rung verify inspects this directory's state later, and only the
		// runsc that wrote a state reads it right (another says "stopped").
		if err := os.WriteFile(filepath.Join(dir, binaryFile), []byte(d.bin), 0o644); err != nil {
			return nil, fmt.Errorf("%s driver: %w", kind, err)
		}
	}
	d.baseFlags, d.extraFlags = flags, cfg.ExtraFlags
	d.flags = append(append([]string{}, flags...), cfg.ExtraFlags...)
	if d.namespaced() {
		// Missing ones make every Create refuse (prepareBox).
		d.nsenter, _ = exec.LookPath("nsenter")
		d.sleep, _ = exec.LookPath("sleep")
		d.shell, _ = exec.LookPath("sh")
	}
	if err := becomeSubreaper(); err != nil {
		return nil, fmt.Errorf("%s driver: %w", kind, err)
	}
	if d.bin != "" {
		d.adoptLogs() // containers left running by a previous process
	}
	return d, nil
}

// binaryFile, in a driver's directory, names the runtime binary that
// last opened it.
const binaryFile = "binary"

// RecordedBinary is the runtime binary that last opened the driver
// directory dir ("" if none did): the one that can read its state.
func RecordedBinary(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, binaryFile))
	if err != nil || !filepath.IsAbs(string(b)) {
		return ""
	}
	return string(b)
}

// Tier is the tier this driver runs: "container" or "sandbox".
func (d *OCI) Tier() string { return d.tier }

// validID accepts the IDs both runtimes accept and that never name a
// path: a letter or digit, then up to 127 letters, digits, '_', '.', '-'.
func validID(id string) bool {
	if id == "" || len(id) > 128 || strings.Contains(id, "..") {
		return false
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !ok && (i == 0 || r != '_' && r != '.' && r != '-') {
			return false
		}
	}
	return true
}

func (d *OCI) check(id string) error {
	if d.bin == "" {
		return fmt.Errorf("%s: %v: %w", d.kind, d.binErr, ErrUnavailable)
	}
	if !validID(id) {
		return fmt.Errorf("%s %q: %w", d.kind, id, ErrInvalidID)
	}
	return nil
}

// Create implements Driver.
func (d *OCI) Create(ctx context.Context, id, bundle string, stdio IO) error {
	if err := d.check(id); err != nil {
		return err
	}
	if err := d.harden(ctx); err != nil {
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	}
	// Reserve the ID in this process, so that a concurrent Create of the
	// same ID fails here instead of having its cleanup delete ours.
	d.mu.Lock()
	_, busy := d.procs[id]
	if busy || d.creating[id] {
		d.mu.Unlock()
		return fmt.Errorf("%s create %s: %w", d.kind, id, ErrExists)
	}
	d.creating[id] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.creating, id)
		d.mu.Unlock()
	}()
	// A stat of the runtime's state file instead of a `state` call: the
	// CLI call costs 8 ms (runc) to 28 ms (runsc) on every start.
	if ok, err := d.exists(id); err != nil {
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	} else if ok {
		return fmt.Errorf("%s create %s: %w", d.kind, id, ErrExists)
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	}
	if err := freshCgroups(bundle); err != nil {
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	}

	p := &proc{done: make(chan struct{})}
	// Fresh descriptors for the replica: its log FIFOs, or pipes that this
	// process copies to the caller's writers (see logs.go).
	ends, logs, err := d.logPipes(id)
	if err != nil {
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	}
	defer func() {
		for _, f := range ends {
			f.Close() // the container holds its own copies
		}
	}()
	p.copies.Add(1)
	go func() { <-logs.done; p.copies.Done() }()
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		logs.stop()
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	}
	defer stdin.Close()
	stdout, err := p.output(stdio.Stdout, ends[0])
	if err != nil {
		p.closeAll()
		logs.stop()
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	}
	stderr, err := p.output(stdio.Stderr, ends[1])
	if err != nil {
		p.closeAll()
		logs.stop()
		return fmt.Errorf("%s create %s: %w", d.kind, id, err)
	}

	runtimeLog := d.runtimeLogPath(id)
	_ = os.Remove(runtimeLog)
	pidFile := filepath.Join(d.logs, id+".pid")
	_ = os.Remove(pidFile)
	defer os.Remove(pidFile)
	var cmd *exec.Cmd
	var bx *box
	if d.namespaced() {
		// Under the tenant's host identity (userns.go), in a cgroup made
		// here: nothing runs before both are in place.
		b, derived, err := d.boxUp(id, bundle)
		if err != nil {
			p.closeAll()
			logs.stop()
			d.dropCurrentLog(id)
			return fmt.Errorf("%s create %s: %w", d.kind, id, err)
		}
		bx = b
		runtimeLog, pidFile = d.boxRuntimeLog(id), filepath.Join(d.boxDir(id), "create.pid")
		cmd, err = d.boxCommand(ctx, id, b, runtimeLog, "create", "--bundle", derived, "--pid-file", pidFile, d.rid(id))
		if err != nil {
			_ = d.closeBox(id, b)
			p.closeAll()
			logs.stop()
			d.dropCurrentLog(id)
			return fmt.Errorf("%s create %s: %w", d.kind, id, err)
		}
	} else {
		cmd = exec.CommandContext(ctx, d.bin, d.args(runtimeLog, "create", "--bundle", bundle, "--pid-file", pidFile, d.rid(id))...)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	var runErr error
	if bx != nil {
		if runErr = d.startInCgroup(cmd, bundle); runErr == nil {
			runErr = cmd.Wait()
		}
	} else {
		runErr = cmd.Run()
	}
	// Our ends of the pipes: the container has its own now.
	p.closeWriteEnds(stdout, stderr)
	for _, f := range ends {
		f.Close()
	}
	if runErr != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = d.execID(dctx, id, "delete", "--force", d.rid(id))
		p.closeAll()
		logs.wait(2 * time.Second)
		msg := lastError(runtimeLog)
		if errors.Is(runErr, ErrUserNS) {
			msg = "refused before runsc ran"
		}
		if msg == noLoggedError || msg == noRuntimeLog {
			// The runtime died before logging (e.g. a Go runtime crash,
			// or before it could open its log): what it printed went to
			// the replica's log.
			if b := d.readCurrentLog(dctx, id); len(b) > 0 {
				msg = cliMessage(b)
			}
		}
		d.dropCurrentLog(id)
		_ = os.Remove(runtimeLog)
		if bx != nil {
			_ = d.closeBox(id, bx)
		} else {
			removeCgroups(bundle)
		}
		return fmt.Errorf("%s create %s: %s: %w", d.kind, id, msg, runErr)
	}
	pid, err := readPid(pidFile)
	if err != nil {
		st, serr := d.State(ctx, id)
		if serr != nil {
			p.closeAll()
			logs.stop()
			return fmt.Errorf("%s create %s: %w", d.kind, id, serr)
		}
		pid = st.Pid
	}
	p.pid = pid
	st := State{Pid: pid}
	d.mu.Lock()
	d.procs[id] = p
	d.mu.Unlock()
	go func() {
		p.reap(d.log)
		d.sweepOrphans()
	}()
	if d.kind == "runsc" {
		d.adoptHelpers()
	}
	d.log.Debug("created", "runtime", d.kind, "id", id, "pid", st.Pid)
	return nil
}

// rid is the ID the runtime knows container id by. runsc names each
// sandbox's control socket after its ID in the host's abstract socket
// namespace, machine-wide, so its IDs carry this driver's scope (from its
// state directory): two rung data directories on one machine can run a
// replica of the same ID. runc's IDs live only in its own state directory.
func (d *OCI) rid(id string) string {
	if d.kind != "runsc" {
		return id
	}
	scoped := id + "." + d.scope
	// A sandbox created before IDs carried the scope keeps its bare ID.
	if d.stateOf(id) && !d.stateOf(scoped) {
		return id
	}
	return scoped
}

// stateOf reports whether runsc has state for runtime ID rid in the
// shared state directory.
func (d *OCI) stateOf(rid string) bool { return d.stateIn(d.state, rid) }

// stateIn reports whether runsc has state for runtime ID rid in dir.
func (d *OCI) stateIn(dir, rid string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, rid+"_sandbox:*.state"))
	return len(m) > 0
}

// exists reports whether the runtime has state for id, from its state
// directory: runc keeps ROOT/ID/state.json, runsc ROOT/ID_sandbox:SB.state.
func (d *OCI) exists(id string) (bool, error) {
	if d.kind == "runsc" {
		if _, err := os.Stat(d.boxRecord(id)); err == nil {
			return d.stateIn(d.boxState(id), d.rid(id)), nil
		}
		return d.stateOf(d.rid(id)), nil
	}
	_, err := os.Stat(filepath.Join(d.state, id, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// readPid reads a runtime's --pid-file.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %q", path, b)
	}
	return pid, nil
}

// Start implements Driver.
func (d *OCI) Start(ctx context.Context, id string) error {
	if err := d.check(id); err != nil {
		return err
	}
	if _, err := d.execID(ctx, id, "start", d.rid(id)); err != nil {
		return fmt.Errorf("%s start %s: %w", d.kind, id, err)
	}
	return nil
}

// State implements Driver.
func (d *OCI) State(ctx context.Context, id string) (State, error) {
	if err := d.check(id); err != nil {
		return State{}, err
	}
	d.adoptLogs()
	out, err := d.execID(ctx, id, "state", d.rid(id))
	if err != nil {
		return State{}, fmt.Errorf("%s state %s: %w", d.kind, id, err)
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return State{}, fmt.Errorf("%s state %s: %w", d.kind, id, err)
	}
	if b, _ := d.loadBox(id); b != nil {
		if b.Bundle != "" {
			st.Bundle = b.Bundle // runsc read the spec derived from it
		}
		// runsc's state is the tenant's to write: its pid counts only
		// when that process is in the cgroup the driver made.
		if st.Pid > 0 && b.Cgroup != "" && !inCgroup(st.Pid, b.Cgroup) {
			return State{}, fmt.Errorf("%s state %s: %w: runsc's state names pid %d, which is not in the sandbox's cgroup %s",
				d.kind, id, ErrUserNS, st.Pid, b.Cgroup)
		}
	}
	if st.Status == Stopped || st.Pid < 0 {
		st.Pid = 0
	}
	st.ID = id // the runtime's own ID may carry the driver's scope (rid)
	return st, nil
}

// Kill implements Driver.
func (d *OCI) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	st, err := d.State(ctx, id)
	if err != nil {
		return fmt.Errorf("%s kill %s: %w", d.kind, id, err)
	}
	if st.Status == Stopped {
		return fmt.Errorf("%s kill %s: %w", d.kind, id, ErrNotRunning)
	}
	if _, err := d.execID(ctx, id, "kill", d.rid(id), strconv.Itoa(int(sig))); err != nil {
		if b, _ := d.loadBox(id); b != nil && errors.Is(err, errHolderGone) && sig == syscall.SIGKILL {
			if kerr := killCgroup(b.Cgroup); kerr != nil {
				return fmt.Errorf("%s kill %s: %w", d.kind, id, kerr)
			}
			return nil
		}
		return fmt.Errorf("%s kill %s: %w", d.kind, id, err)
	}
	return nil
}

// Wait implements Driver.
func (d *OCI) Wait(ctx context.Context, id string) (Exit, error) {
	if err := d.check(id); err != nil {
		return Exit{}, err
	}
	d.mu.Lock()
	p := d.procs[id]
	d.mu.Unlock()
	if p == nil {
		return d.pollStopped(ctx, id)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return Exit{}, fmt.Errorf("%s wait %s: %w", d.kind, id, ctx.Err())
	}
	// Let pipe copies drain: the pipes close with the last process holding
	// them, normally the container itself.
	drained := make(chan struct{})
	go func() { p.copies.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		d.log.Warn("output pipes still open after exit", "runtime", d.kind, "id", id)
	case <-ctx.Done():
	}
	return p.exit, nil
}

// pollStopped waits for a container this process did not create (adopted
// after a restart) to stop; its exit status is unknown.
func (d *OCI) pollStopped(ctx context.Context, id string) (Exit, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := d.State(ctx, id)
		if err != nil {
			return Exit{}, fmt.Errorf("%s wait %s: %w", d.kind, id, err)
		}
		if st.Status == Stopped {
			return Exit{Code: -1, At: time.Now()}, fmt.Errorf("%s wait %s: %w", d.kind, id, ErrExitUnknown)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return Exit{}, fmt.Errorf("%s wait %s: %w", d.kind, id, ctx.Err())
		}
	}
}

// Delete implements Driver.
func (d *OCI) Delete(ctx context.Context, id string) error {
	if err := d.check(id); err != nil {
		return err
	}
	bx, err := d.loadBox(id)
	if err != nil {
		return fmt.Errorf("%s delete %s: %w", d.kind, id, err)
	}
	// `delete --force` succeeds for an unknown ID; look first.
	if ok, err := d.exists(id); err != nil {
		return fmt.Errorf("%s delete %s: %w", d.kind, id, err)
	} else if !ok {
		if bx != nil { // a box whose sandbox never came to be
			_ = d.closeBox(id, bx)
		}
		return fmt.Errorf("%s delete %s: %w", d.kind, id, ErrNotFound)
	}
	if _, err := d.execID(ctx, id, "delete", "--force", d.rid(id)); err != nil {
		if bx == nil || !errors.Is(err, errHolderGone) {
			return fmt.Errorf("%s delete %s: %w", d.kind, id, err)
		}
		if err := killCgroup(bx.Cgroup); err != nil {
			return fmt.Errorf("%s delete %s: %w", d.kind, id, err)
		}
	}
	d.mu.Lock()
	p := d.procs[id]
	delete(d.procs, id)
	d.mu.Unlock()
	if p != nil {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			d.log.Warn("container process not reaped after delete", "runtime", d.kind, "id", id, "pid", p.pid)
		}
		p.closeAll()
	}
	if d.kind == "runsc" {
		d.adoptHelpers()
	}
	d.sweepOrphans()
	// The container's processes are gone: its FIFOs are at EOF once the
	// copier has read what they held.
	if c := d.copierOf(id); c != nil {
		c.wait(2 * time.Second)
	}
	if bx != nil {
		if err := d.closeBox(id, bx); err != nil {
			return fmt.Errorf("%s delete %s: %w", d.kind, id, err)
		}
	}
	if err := d.retireLog(id); err != nil {
		return fmt.Errorf("%s delete %s: keep log: %w", d.kind, id, err)
	}
	if err := os.Remove(d.runtimeLogPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s delete %s: %w", d.kind, id, err)
	}
	return nil
}

// Logs implements Driver: the current run's output, as the replica wrote
// it (ReadLogs chooses more). After Delete it is ErrNotFound: the run's
// log is the previous one then.
func (d *OCI) Logs(ctx context.Context, id string) (io.ReadCloser, error) {
	if err := d.check(id); err != nil {
		return nil, err
	}
	return d.ReadLogs(ctx, id, logfile.ReadOptions{})
}

// readCurrentLog returns what the current log holds (at most 64 KiB).
func (d *OCI) readCurrentLog(ctx context.Context, id string) []byte {
	rc, err := d.ReadLogs(ctx, id, logfile.ReadOptions{})
	if err != nil {
		return nil
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
	return b
}

// runtimeLogPath is where the runtime CLI writes its own errors (JSON).
func (d *OCI) runtimeLogPath(id string) string { return filepath.Join(d.logs, id+".runtime.log") }

func (d *OCI) args(runtimeLog string, args ...string) []string {
	out := append([]string{"--root", d.state}, d.globalFlags()...)
	if runtimeLog != "" {
		out = append(out, "--log", runtimeLog, "--log-format", "json")
	}
	return append(out, args...)
}

// exec runs one CLI call and returns its standard output; errors carry the
// CLI's message and wrap ErrNotFound or ErrNotRunning when it says so.
func (d *OCI) exec(ctx context.Context, args ...string) ([]byte, error) {
	return d.run(exec.CommandContext(ctx, d.bin, d.args("", args...)...))
}

// execID is exec for a call about container id: a boxed sandbox's runs in
// its tenant's user namespace (userns.go).
func (d *OCI) execID(ctx context.Context, id string, args ...string) ([]byte, error) {
	cmd, err := d.command(ctx, id, "", args...)
	if err != nil {
		return nil, err
	}
	return d.run(cmd)
}

// command is the CLI call args about container id, with its runtime log:
// inside its tenant's user namespace for a boxed sandbox, else as this
// process. A nil ctx makes a call that ctx does not kill.
func (d *OCI) command(ctx context.Context, id, runtimeLog string, args ...string) (*exec.Cmd, error) {
	b, err := d.loadBox(id)
	if err != nil {
		return nil, err
	}
	if b != nil {
		return d.boxCommand(ctx, id, b, runtimeLog, args...)
	}
	if ctx == nil {
		return exec.Command(d.bin, d.args(runtimeLog, args...)...), nil
	}
	return exec.CommandContext(ctx, d.bin, d.args(runtimeLog, args...)...), nil
}

func (d *OCI) run(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := cliMessage(stderr.Bytes())
		return nil, fmt.Errorf("%s: %w", msg, classify(msg, err))
	}
	return stdout.Bytes(), nil
}

// classify maps a runtime's error text onto the sentinel errors.
func classify(msg string, err error) error {
	switch {
	case strings.Contains(msg, "does not exist"), strings.Contains(msg, "file does not exist"):
		return fmt.Errorf("%w (%v)", ErrNotFound, err)
	case strings.Contains(msg, "not running"), strings.Contains(msg, "cannot signal container"),
		strings.Contains(msg, "container is stopped"):
		return fmt.Errorf("%w (%v)", ErrNotRunning, err)
	}
	return err
}

// cliMessage extracts the message of runc's logrus lines
// (time=... level=error msg="...") or returns the trimmed text.
func cliMessage(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndex(s, `msg="`); i >= 0 {
		m := s[i+5:]
		if j := strings.LastIndex(m, `"`); j >= 0 {
			m = m[:j]
		}
		return strings.ReplaceAll(m, `\"`, `"`)
	}
	// Long output is usually a Go traceback: its first lines say why.
	lines := strings.Split(s, "\n")
	if len(lines) > 4 {
		s = strings.Join(lines[:3], "; ") + " … " + lines[len(lines)-1]
	}
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}

const (
	noLoggedError = "runtime logged no error"
	noRuntimeLog  = "no runtime log"
)

// lastError returns the last error message of a runtime's JSON log.
func lastError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return noRuntimeLog
	}
	defer f.Close()
	msg := noLoggedError
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if err := dec.Decode(&rec); err != nil {
			break
		}
		if rec.Level == "error" || rec.Level == "fatal" {
			msg = rec.Msg
		}
	}
	return msg
}

// output returns the file to hand the container for one stream: fifo
// (the replica's log) for a nil writer, else a fresh pipe copied to w by
// this process. A caller's *os.File is never handed over: runsc would
// change its owner, and writes would land at the runtime's own offset.
func (p *proc) output(w io.Writer, fifo *os.File) (*os.File, error) {
	if w == nil {
		return fifo, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, r, pw)
	p.copies.Add(1)
	go func() {
		defer p.copies.Done()
		_, _ = io.Copy(w, r)
	}()
	return pw, nil
}

// closeWriteEnds closes this process's copies of pipe write ends handed to
// the container, so that the copies see EOF when the container exits.
func (p *proc) closeWriteEnds(files ...*os.File) {
	for _, f := range files {
		for _, c := range p.closers {
			if c == io.Closer(f) {
				f.Close()
			}
		}
	}
}

func (p *proc) closeAll() {
	for _, c := range p.closers {
		c.Close()
	}
}

// cgroupDirs are the directories of a bundle's cgroup in every mounted
// hierarchy (cgroup v1 controllers and the v2 unified one).
func cgroupDirs(bundleDir string) []string {
	s, err := bundle.Read(bundleDir)
	if err != nil || s.Linux == nil {
		return nil
	}
	return cgroupDirsOf(s.Linux.CgroupsPath)
}

// cgroupDirsOf is cgroupDirs for a cgroupsPath.
func cgroupDirsOf(p string) []string {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
		return nil
	}
	p = filepath.Clean(p)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		// cgroup v2 alone: one hierarchy, no controller directories to look
		// under (a glob there would match other slices' cgroups).
		return []string{filepath.Join("/sys/fs/cgroup", p)}
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", p))
	return append(dirs, filepath.Join("/sys/fs/cgroup", p))
}

// removeCgroups removes the (empty) cgroup directories of a bundle whose
// create failed: runsc leaves them behind. rmdir only removes empty
// cgroups, so a live one is never touched.
func removeCgroups(bundleDir string) {
	for _, d := range cgroupDirs(bundleDir) {
		_ = syscall.Rmdir(d)
	}
}

// freshCgroups makes sure a replica starts in a cgroup of its own with its
// own limits: empty leftovers of a replica that died with its runtime
// (kill -9, a reboot of the agent) are removed, and a cgroup that still
// holds processes refuses the create. Joining it would share its
// processes' limits, and runsc applies no limits at all to a cgroup it
// didn't create, so the replica would run with whatever was there.
func freshCgroups(bundleDir string) error {
	removeCgroups(bundleDir)
	for _, d := range cgroupDirs(bundleDir) {
		_, err := os.Stat(d)
		switch {
		case err == nil:
			return fmt.Errorf("%w: %s still exists (it holds processes or cgroups of its own): stop what runs there first", ErrCgroupInUse, d)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%w: %s: %v", ErrCgroupInUse, d, err) // can't tell: refuse
		}
	}
	return nil
}
