package guest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrModules: the kernel's module tree lacks a module the guest needs.
var ErrModules = errors.New("guest kernel modules")

// Needed are the modules a guest needs to reach its channel, its root and
// volumes, and its network: virtio over PCI, the block, console and net
// drivers, and ext4. Their
// dependencies come from modules.dep, never from this list.
var Needed = []string{"virtio_pci", "virtio_blk", "virtio_console", "ext4", "virtio_net"}

// Module is one module file to load, relative to /lib/modules/VERSION.
type Module struct {
	Path string
	// Soft is a soft dependency (modules.softdep): loaded if it can be,
	// another module may provide the same (crc32c-intel or generic).
	Soft bool
}

// Index is a kernel's modules.dep, modules.softdep and modules.alias.
type Index struct {
	deps    map[string][]string // module name → dependency paths
	paths   map[string]string   // module name → path
	softPre map[string][]string // module name → soft pre-dependency names or aliases
	aliases map[string][]string // exact alias → module names
}

// name is a module's name as modprobe uses it: the file's base name
// without .ko[.xz|.zst|.gz], '-' as '_'.
func name(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// ParseIndex reads the three files (softdep and alias may be nil).
func ParseIndex(dep, softdep, alias io.Reader) (*Index, error) {
	ix := &Index{deps: map[string][]string{}, paths: map[string]string{}, softPre: map[string][]string{}, aliases: map[string][]string{}}
	s := bufio.NewScanner(dep)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		mod, deps, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		n := name(mod)
		ix.paths[n] = mod
		ix.deps[n] = strings.Fields(deps)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	if softdep != nil {
		s := bufio.NewScanner(softdep)
		for s.Scan() {
			f := strings.Fields(s.Text())
			if len(f) < 4 || f[0] != "softdep" || f[2] != "pre:" {
				continue
			}
			for _, d := range f[3:] {
				if d == "post:" {
					break
				}
				ix.softPre[name(f[1])] = append(ix.softPre[name(f[1])], d)
			}
		}
	}
	if alias != nil {
		s := bufio.NewScanner(alias)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			f := strings.Fields(s.Text())
			if len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?[") {
				ix.aliases[f[1]] = append(ix.aliases[f[1]], name(f[2]))
			}
		}
	}
	return ix, nil
}

// Resolve returns the modules to load for want, each after its
// dependencies (soft pre-dependencies first of all), each once. A wanted
// module the kernel has built in is not in modules.dep; builtin (the
// kernel's modules.builtin names) says which those are.
func (ix *Index) Resolve(want []string, builtin map[string]bool) ([]Module, error) {
	var out []Module
	seen := map[string]bool{}
	var visit func(n string, soft bool, stack []string) error
	visit = func(n string, soft bool, stack []string) error {
		n = name(n)
		if seen[n] || builtin[n] {
			return nil
		}
		p, ok := ix.paths[n]
		if !ok {
			if soft {
				return nil
			}
			return fmt.Errorf("%w: %s is neither a module nor built in (needed by %s)", ErrModules, n, strings.Join(append(stack, "the guest"), " ← "))
		}
		seen[n] = true
		for _, sd := range ix.softPre[n] {
			targets := ix.aliases[sd]
			if len(targets) == 0 {
				targets = []string{sd}
			}
			for _, t := range targets {
				if err := visit(t, true, append(stack, n)); err != nil {
					return err
				}
			}
		}
		for _, d := range ix.deps[n] {
			if err := visit(d, soft, append(stack, n)); err != nil {
				return err
			}
		}
		out = append(out, Module{Path: p, Soft: soft})
		return nil
	}
	for _, w := range want {
		if err := visit(w, false, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ParseBuiltin reads modules.builtin (one path a line).
func ParseBuiltin(r io.Reader) map[string]bool {
	out := map[string]bool{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		if t := strings.TrimSpace(s.Text()); t != "" {
			out[name(t)] = true
		}
	}
	return out
}
