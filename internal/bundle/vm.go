package bundle

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// The vm tier's per-replica devices, declared by the node's attachers as
// annotations (only the node writes a bundle's annotations; a tenant's
// manifest never reaches them) and read by the vm driver:
//
//	dev.rung.vm.disks  JSON []VMDisk: volume images attached as virtio-blk disks
//	dev.rung.vm.net    JSON VMNet: the tap device the guest's eth0 is plugged into
//
// They are not mounts: the host never mounts a vm replica's volume (the
// guest's kernel does), so runc's and admission's mount rules don't apply.
const (
	VMDisksAnnotation = "dev.rung.vm.disks"
	VMNetAnnotation   = "dev.rung.vm.net"
)

// VMDisk is one volume image a vm-tier guest mounts at Path.
type VMDisk struct {
	Image    string `json:"image"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// VMNet is a vm-tier replica's network: the node-side tap device (in the
// network namespace NetNS, a path; empty: the agent's own) and the
// guest's eth0 address and gateway.
type VMNet struct {
	Tap     string     `json:"tap"`
	NetNS   string     `json:"netns,omitempty"`
	Addr    netip.Addr `json:"addr"`
	Gateway netip.Addr `json:"gateway"`
}

// WithVMDisk adds volume image img, mounted in the guest at dest.
func WithVMDisk(img, dest string, readOnly bool) Opt {
	return func(s *specs.Spec) error {
		if p := VolumePathProblem(dest); p != "" {
			return fmt.Errorf("volume at %q: %s: %w", dest, p, ErrInvalidOption)
		}
		if !path.IsAbs(img) || path.Clean(img) != img || strings.Contains(img, ",") {
			return fmt.Errorf("volume image %q: not a clean absolute path without commas: %w", img, ErrInvalidOption)
		}
		disks, err := VMDisks(s)
		if err != nil {
			return err
		}
		for _, d := range disks {
			if d.Path == dest {
				return fmt.Errorf("volume at %s: the path has a volume already: %w", dest, ErrInvalidOption)
			}
		}
		for _, m := range s.Mounts {
			if m.Destination == dest {
				return fmt.Errorf("volume at %s: the path has a mount already: %w", dest, ErrInvalidOption)
			}
		}
		b, err := json.Marshal(append(disks, VMDisk{Image: img, Path: dest, ReadOnly: readOnly}))
		if err != nil {
			return err
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[VMDisksAnnotation] = string(b)
		return nil
	}
}

// VMDisks are the volume disks declared in s, checked again (the driver
// reads them from config.json).
func VMDisks(s *specs.Spec) ([]VMDisk, error) {
	v, ok := s.Annotations[VMDisksAnnotation]
	if !ok {
		return nil, nil
	}
	var disks []VMDisk
	if err := json.Unmarshal([]byte(v), &disks); err != nil {
		return nil, fmt.Errorf("annotation %s: %w: %w", VMDisksAnnotation, err, ErrInvalidOption)
	}
	for _, d := range disks {
		if p := VolumePathProblem(d.Path); p != "" {
			return nil, fmt.Errorf("vm disk at %q: %s: %w", d.Path, p, ErrInvalidOption)
		}
		if !path.IsAbs(d.Image) || path.Clean(d.Image) != d.Image || strings.Contains(d.Image, ",") {
			return nil, fmt.Errorf("vm disk image %q: %w", d.Image, ErrInvalidOption)
		}
	}
	return disks, nil
}

// WithVMNet plugs the guest into tap device n.Tap.
func WithVMNet(n VMNet) Opt {
	return func(s *specs.Spec) error {
		if err := n.check(); err != nil {
			return err
		}
		b, err := json.Marshal(n)
		if err != nil {
			return err
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[VMNetAnnotation] = string(b)
		return nil
	}
}

// VMNetOf is the network declared in s (nil: none).
func VMNetOf(s *specs.Spec) (*VMNet, error) {
	v, ok := s.Annotations[VMNetAnnotation]
	if !ok {
		return nil, nil
	}
	var n VMNet
	if err := json.Unmarshal([]byte(v), &n); err != nil {
		return nil, fmt.Errorf("annotation %s: %w: %w", VMNetAnnotation, err, ErrInvalidOption)
	}
	if err := n.check(); err != nil {
		return nil, err
	}
	return &n, nil
}

func (n VMNet) check() error {
	if n.Tap == "" || len(n.Tap) > 15 || strings.ContainsAny(n.Tap, "/ ,=\x00") {
		return fmt.Errorf("vm tap %q: an interface name of up to 15 bytes: %w", n.Tap, ErrInvalidOption)
	}
	if n.NetNS != "" && (!path.IsAbs(n.NetNS) || path.Clean(n.NetNS) != n.NetNS) {
		return fmt.Errorf("vm netns %q: not a clean absolute path: %w", n.NetNS, ErrInvalidOption)
	}
	if !n.Addr.Is4() || !n.Gateway.Is4() {
		return fmt.Errorf("vm network: address %v and gateway %v must be IPv4: %w", n.Addr, n.Gateway, ErrInvalidOption)
	}
	return nil
}
