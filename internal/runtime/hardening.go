package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// runscHardening are global flags a current runsc needs to keep the
// sandbox's hardening that Debian 12's (20221219) has by default:
//
//   - --directfs=false: with directfs (on by default since 2023) the
//     sentry runs in the container's user namespace as its root with the
//     spec's capabilities (CAP_CHOWN, CAP_DAC_OVERRIDE, …) instead of as
//     nobody with none, so every tenant's sentry would run as its range's
//     root, not its nobody (escape and verify tests check this);
//   - --gofer-network-namespace=new: by default the gofer joins a shared
//     empty network namespace that runsc bind-mounts at ROOT/null-netns
//     and never unmounts; a new one per gofer leaves no mount behind.
//
// A runsc that doesn't know one lacks what it turns back: Debian 12's
// knows neither, and has no directfs and no shared null-netns at all.
var runscHardening = []string{"--directfs=false", "--gofer-network-namespace=new"}

// flagAskWait bounds one `runsc FLAG --version` call; a runsc that hangs
// that long is broken, and an error, not a "no".
const flagAskWait = 30 * time.Second

// RunscHardeningFlags returns the runsc hardening flags (see
// runscHardening) that the runsc at bin (default runsc in PATH) knows,
// asked with `runsc FLAG --version`, never guessed from a version string.
// A flag is left out only when runsc refuses it as undefined; any other
// failure (missing binary, crash, timeout, another message) is an error
// wrapping ErrHardening, since running without the flag could run weaker.
// Answers are cached per binary, size and modification time; errors are
// not.
func RunscHardeningFlags(ctx context.Context, bin string) ([]string, error) {
	if bin == "" {
		bin = "runsc"
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHardening, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHardening, err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", p, fi.Size(), fi.ModTime().UnixNano())
	if v, ok := hardeningFlags.Load(key); ok {
		return v.([]string), nil
	}
	out := []string{}
	for _, f := range runscHardening {
		known, err := knowsFlag(ctx, p, f)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s --version: %v", ErrHardening, p, f, err)
		}
		if known {
			out = append(out, f)
		}
	}
	hardeningFlags.Store(key, out)
	return out, nil
}

var hardeningFlags sync.Map

// knowsFlag runs `runsc FLAG --version`: exit 0 means runsc takes the
// flag. Go's flag package refuses an undefined one with exit status 2 and
// "flag provided but not defined: -NAME" first on stderr; only that exact
// answer, for this flag's name, means no.
func knowsFlag(ctx context.Context, runsc, flag string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, flagAskWait)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, runsc, flag, "--version")
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second // a child holding stderr open
	err := cmd.Run()
	if err == nil {
		return true, nil
	}
	if ctx.Err() != nil {
		return false, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	name, _, _ := strings.Cut(strings.TrimLeft(flag, "-"), "=")
	first, _, _ := strings.Cut(stderr.String(), "\n")
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 && first == "flag provided but not defined: -"+name {
		return false, nil
	}
	if msg := strings.TrimSpace(first); msg != "" {
		return false, fmt.Errorf("%v: %s", err, msg)
	}
	return false, err
}

// harden puts the hardening flags of the driver's runsc into its global
// flags, asking runsc until it has an answer: a driver whose runsc could
// not be asked refuses to create sandboxes (fail closed) and asks again
// on the next Create. runc needs none.
func (d *OCI) harden(ctx context.Context) error {
	if d.kind != "runsc" {
		return nil
	}
	d.flagMu.Lock()
	defer d.flagMu.Unlock()
	if d.hardened {
		return nil
	}
	hf, err := RunscHardeningFlags(ctx, d.bin)
	if err != nil {
		return err
	}
	d.flags = append(append(append([]string{}, d.baseFlags...), hf...), d.extraFlags...)
	d.hardened = true
	return nil
}

// globalFlags are the runtime's global flags but --root. The slice is
// replaced, never changed in place, so callers may keep it.
func (d *OCI) globalFlags() []string {
	d.flagMu.Lock()
	defer d.flagMu.Unlock()
	return d.flags
}
