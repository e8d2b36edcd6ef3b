package guest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const dep = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`

const softdep = "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n"
const alias = "alias crypto-crc32c crc32c_generic\nalias crypto-crc32c crc32c_intel\nalias pci:v00001AF4d* virtio_pci\n"

func TestResolve(t *testing.T) {
	ix, err := ParseIndex(strings.NewReader(dep), strings.NewReader(softdep), strings.NewReader(alias))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		want    []string
		builtin map[string]bool
		out     []string
		err     error
	}{
		{name: "virtio before its users", want: []string{"virtio_pci", "virtio_blk"}, out: []string{
			"kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
			"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/block/virtio_blk.ko"}},
		{name: "ext4 with its soft dependency through the alias", want: []string{"ext4"}, out: []string{
			"?kernel/crypto/crc32c_generic.ko", "?kernel/arch/x86/crypto/crc32c-intel.ko",
			"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"}},
		{name: "built in", want: []string{"ext4", "virtio_console"}, builtin: map[string]bool{"ext4": true, "virtio": true},
			out: []string{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/char/virtio_console.ko"}},
		{name: "missing", want: []string{"virtio_vsock"}, err: ErrModules},
	} {
		t.Run(c.name, func(t *testing.T) {
			mods, err := ix.Resolve(c.want, c.builtin)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			var got []string
			for _, m := range mods {
				p := m.Path
				if m.Soft {
					p = "?" + p
				}
				got = append(got, p)
			}
			if diff := cmp.Diff(c.out, got); diff != "" {
				t.Errorf("modules (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInitramfsDeterministic builds the initramfs of a fake kernel tree
// twice: the same bytes, the same name, holding /init and the modules in
// load order.
func TestInitramfsDeterministic(t *testing.T) {
	root := t.TempDir()
	mods := filepath.Join(root, "lib/modules/9.9.9-test")
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		p, _, _ := strings.Cut(line, ":")
		if err := os.MkdirAll(filepath.Join(mods, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mods, p), []byte("module "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for n, s := range map[string]string{"modules.dep": dep, "modules.softdep": softdep, "modules.alias": alias} {
		if err := os.WriteFile(filepath.Join(mods, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "boot/vmlinuz-9.9.9-test"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(root, "rung-vm")
	if err := os.WriteFile(init, []byte("init binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := FindKernel(root, "")
	if err != nil || k.Release != "9.9.9-test" {
		t.Fatalf("FindKernel = %+v, %v", k, err)
	}
	a, err := BuildInitramfs(filepath.Join(root, "out1"), k, init)
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildInitramfs(filepath.Join(root, "out2"), k, init)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if filepath.Base(a) != filepath.Base(b) || !bytes.Equal(da, db) {
		t.Errorf("two builds differ: %s (%d bytes), %s (%d bytes)", a, len(da), b, len(db))
	}
	for _, want := range []string{"070701", "init\x00", "init binary", "lib/modules/load\x00", "TRAILER!!!"} {
		if !bytes.Contains(da, []byte(want)) {
			t.Errorf("initramfs lacks %q", want)
		}
	}
	load := "virtio_pci_modern_dev.ko\nvirtio.ko\nvirtio_ring.ko\nvirtio_pci.ko\nvirtio_blk.ko\nvirtio_console.ko\n" +
		"?crc32c_generic.ko\n?crc32c-intel.ko\ncrc16.ko\nmbcache.ko\njbd2.ko\next4.ko\nfailover.ko\nnet_failover.ko\nvirtio_net.ko\n"
	if !bytes.Contains(da, []byte(load)) {
		t.Errorf("the initramfs lacks the load order %q", load)
	}
	if _, err := FindKernel(root, filepath.Join(root, "boot/vmlinuz-1.0-nomods")); !errors.Is(err, ErrKernel) {
		t.Errorf("kernel without a module tree = %v, want ErrKernel", err)
	}
}
