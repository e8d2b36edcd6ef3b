package bundle

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestVMDisks(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Opt
		want []VMDisk
		err  error
	}{
		{name: "none"},
		{name: "two", opts: []Opt{WithVMDisk("/d/a.img", "/data", false), WithVMDisk("/d/b.img", "/ro", true)},
			want: []VMDisk{{Image: "/d/a.img", Path: "/data"}, {Image: "/d/b.img", Path: "/ro", ReadOnly: true}}},
		{name: "same path twice", opts: []Opt{WithVMDisk("/d/a.img", "/data", false), WithVMDisk("/d/b.img", "/data", false)}, err: ErrInvalidOption},
		{name: "inside /proc", opts: []Opt{WithVMDisk("/d/a.img", "/proc/x", false)}, err: ErrInvalidOption},
		{name: "relative image", opts: []Opt{WithVMDisk("d/a.img", "/data", false)}, err: ErrInvalidOption},
		{name: "comma in image (QEMU option injection)", opts: []Opt{WithVMDisk("/d/a.img,format=qcow2", "/data", false)}, err: ErrInvalidOption},
		{name: "unclean path", opts: []Opt{WithVMDisk("/d/a.img", "/data/../etc", false)}, err: ErrInvalidOption},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &specs.Spec{}
			var err error
			for _, o := range c.opts {
				if err = o(s); err != nil {
					break
				}
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			got, err := VMDisks(s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("disks (-want +got):\n%s", diff)
			}
		})
	}
	// A hand-edited annotation is checked again when read.
	bad := &specs.Spec{Annotations: map[string]string{VMDisksAnnotation: `[{"image":"/d/a.img","path":"/dev/sda"}]`}}
	if _, err := VMDisks(bad); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("a disk at /dev/sda read back: %v, want ErrInvalidOption", err)
	}
}

func TestVMNet(t *testing.T) {
	ok := VMNet{Tap: "rv0123456789a", NetNS: "/run/netns/h1", Addr: netip.MustParseAddr("10.1.2.3"), Gateway: netip.MustParseAddr("10.1.2.1")}
	s := &specs.Spec{}
	if n, err := VMNetOf(s); n != nil || err != nil {
		t.Errorf("no network: %v, %v", n, err)
	}
	if err := WithVMNet(ok)(s); err != nil {
		t.Fatal(err)
	}
	got, err := VMNetOf(s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ok, *got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("network (-want +got):\n%s", diff)
	}
	for name, mut := range map[string]func(*VMNet){
		"long tap":       func(n *VMNet) { n.Tap = "a-very-long-tap-name" },
		"comma in tap":   func(n *VMNet) { n.Tap = "tap,fd=3" },
		"no tap":         func(n *VMNet) { n.Tap = "" },
		"relative netns": func(n *VMNet) { n.NetNS = "netns/h1" },
		"ipv6":           func(n *VMNet) { n.Addr = netip.MustParseAddr("fd00::1") },
	} {
		n := ok
		mut(&n)
		if err := WithVMNet(n)(&specs.Spec{}); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
}
