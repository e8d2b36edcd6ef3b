package bundle

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// VolumeAnnotation prefixes the annotation that declares a volume mount:
// "dev.rung.volume:/data" = the host source. A bind mount is allowed in a
// replica's spec only when it is declared so and has the shape WithVolume
// gives it (IsVolumeMount); every other bind mount is still refused.
const VolumeAnnotation = "dev.rung.volume:"

// ForbiddenVolumePaths are where a volume may never be mounted: the
// kernel's and the runtime's own file systems.
func ForbiddenVolumePaths() []string { return []string{"/proc", "/dev", "/sys"} }

// VolumePathProblem says why dest can't take a volume ("" when it can).
func VolumePathProblem(dest string) string {
	switch {
	case !path.IsAbs(dest) || path.Clean(dest) != dest:
		return "not a clean absolute path"
	case dest == "/":
		return "the root itself"
	case dest == "/tmp":
		return "the replica's own tmpfs"
	}
	for _, p := range ForbiddenVolumePaths() {
		if dest == p || strings.HasPrefix(dest, p+"/") {
			return "inside " + p
		}
	}
	return ""
}

// WithVolume bind-mounts a node volume's root (source, a mounted file
// system on the host) at dest: nosuid, nodev, read-only when asked, never
// recursive, never shared. The sandbox tier gets it through gVisor's gofer
// as any bind mount.
func WithVolume(source, dest string, readOnly bool) Opt {
	return func(s *specs.Spec) error {
		if p := VolumePathProblem(dest); p != "" {
			return fmt.Errorf("volume at %q: %s: %w", dest, p, ErrInvalidOption)
		}
		if !path.IsAbs(source) || path.Clean(source) != source {
			return fmt.Errorf("volume source %q not a clean absolute path: %w", source, ErrInvalidOption)
		}
		for _, m := range s.Mounts {
			if m.Destination == dest {
				return fmt.Errorf("volume at %s: the path has a mount already: %w", dest, ErrInvalidOption)
			}
		}
		mode := "rw"
		if readOnly {
			mode = "ro"
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: dest, Type: "bind", Source: source,
			Options: []string{"bind", "nosuid", "nodev", mode, "private"}})
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[VolumeAnnotation+dest] = source
		return nil
	}
}

// IsVolumeMount reports whether m is a volume mount as WithVolume makes
// it: declared by annotation, a plain bind (not rbind) with nosuid and
// nodev, private, outside /proc, /dev and /sys.
func IsVolumeMount(s *specs.Spec, m specs.Mount) bool {
	if s == nil || s.Annotations[VolumeAnnotation+m.Destination] != m.Source || m.Source == "" {
		return false
	}
	if m.Type != "bind" || VolumePathProblem(m.Destination) != "" || !path.IsAbs(m.Source) || path.Clean(m.Source) != m.Source {
		return false
	}
	for _, need := range []string{"bind", "nosuid", "nodev"} {
		if !slices.Contains(m.Options, need) {
			return false
		}
	}
	for _, o := range m.Options {
		if !slices.Contains([]string{"bind", "nosuid", "nodev", "ro", "rw", "private", "rprivate", "noexec"}, o) {
			return false
		}
	}
	return true
}
