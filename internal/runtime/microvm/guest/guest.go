// Package guest builds what a vm-tier guest boots: the distribution's
// kernel (found under /boot, or a path the operator sets) and an
// initramfs that rung writes itself, deterministically (the same inputs
// give the same bytes, so it is built once per kernel and init): the
// static rung-vm init, and the kernel modules it needs with their
// dependencies read from the kernel's modules.dep, modules.softdep and
// modules.alias.
package guest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrKernel: no usable guest kernel.
var ErrKernel = errors.New("guest kernel")

// Kernel is a guest kernel and its module tree.
type Kernel struct {
	Image   string // the bootable image (vmlinuz)
	Release string // its uname -r
	Modules string // /lib/modules/RELEASE
}

// FindKernel returns the guest kernel: image if set (its release from the
// file name vmlinuz-RELEASE), else the newest /boot/vmlinuz-* whose
// module tree exists. root is "/" except in tests.
func FindKernel(root, image string) (Kernel, error) {
	if image != "" {
		if _, err := os.Stat(image); err != nil {
			return Kernel{}, fmt.Errorf("%w: %s: %w (set the vm kernel to a vmlinuz file, or install linux-image-amd64)", ErrKernel, image, err)
		}
		rel, ok := strings.CutPrefix(filepath.Base(image), "vmlinuz-")
		if !ok {
			return Kernel{}, fmt.Errorf("%w: %s: name it vmlinuz-RELEASE so its modules (/lib/modules/RELEASE) can be found", ErrKernel, image)
		}
		k := Kernel{Image: image, Release: rel, Modules: filepath.Join(root, "lib/modules", rel)}
		if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
			return Kernel{}, fmt.Errorf("%w: %s has no modules: %w", ErrKernel, image, err)
		}
		return k, nil
	}
	imgs, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(imgs)))
	for _, img := range imgs {
		rel := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods := filepath.Join(root, "lib/modules", rel)
		if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err == nil {
			return Kernel{Image: img, Release: rel, Modules: mods}, nil
		}
	}
	return Kernel{}, fmt.Errorf("%w: no /boot/vmlinuz-* with its modules under %s (install linux-image-amd64, or set the vm kernel)", ErrKernel, filepath.Join(root, "lib/modules"))
}

// Modules resolves the modules the guest needs from k's module tree.
func (k Kernel) ResolveModules() ([]Module, error) {
	open := func(n string) *os.File {
		f, err := os.Open(filepath.Join(k.Modules, n))
		if err != nil {
			return nil
		}
		return f
	}
	dep := open("modules.dep")
	if dep == nil {
		return nil, fmt.Errorf("%w: %s: no modules.dep", ErrModules, k.Modules)
	}
	defer dep.Close()
	soft, alias, builtin := open("modules.softdep"), open("modules.alias"), open("modules.builtin")
	for _, f := range []*os.File{soft, alias, builtin} {
		if f != nil {
			defer f.Close()
		}
	}
	ix, err := ParseIndex(dep, nilReader(soft), nilReader(alias))
	if err != nil {
		return nil, err
	}
	bi := map[string]bool{}
	if builtin != nil {
		bi = ParseBuiltin(builtin)
	}
	mods, err := ix.Resolve(Needed, bi)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	return mods, nil
}

func nilReader(f *os.File) interface{ Read([]byte) (int, error) } {
	if f == nil {
		return bytes.NewReader(nil)
	}
	return f
}

// BuildInitramfs writes the initramfs for k with init (the rung-vm
// binary) into dir, named by its content's hash, unless it is there
// already, and returns its path.
func BuildInitramfs(dir string, k Kernel, init string) (string, error) {
	mods, err := k.ResolveModules()
	if err != nil {
		return "", err
	}
	initData, err := os.ReadFile(init)
	if err != nil {
		return "", fmt.Errorf("guest init %s: %w (build it: make build, or go build ./cmd/rung-vm)", init, err)
	}
	var buf bytes.Buffer
	w := newCPIO(&buf)
	for _, d := range []string{"dev", "proc", "sys", "newroot", "lib", "lib/modules"} {
		w.dir(d, 0o755)
	}
	w.charDev("dev/console", 0o600, 5, 1)
	w.file("init", 0o755, initData)
	var load []string
	for _, m := range mods {
		if !strings.HasSuffix(m.Path, ".ko") {
			return "", fmt.Errorf("%w: %s is compressed; the guest init loads plain .ko files", ErrModules, m.Path)
		}
		data, err := os.ReadFile(filepath.Join(k.Modules, m.Path))
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrModules, err)
		}
		base := filepath.Base(m.Path)
		w.file("lib/modules/"+base, 0o644, data)
		if m.Soft {
			base = "?" + base
		}
		load = append(load, base)
	}
	w.file("lib/modules/load", 0o644, []byte(strings.Join(load, "\n")+"\n"))
	if err := w.close(); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "initramfs-"+hex.EncodeToString(sum[:8])+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, ".initramfs-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}
