package verify

import (
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// CapSet is a capability set as /proc/PID/status shows it: bit n is
// capability n.
type CapSet uint64

// String formats s as status does: 16 hex digits.
func (s CapSet) String() string { return fmt.Sprintf("%016x", uint64(s)) }

// MarshalText encodes s as its 16 hex digits.
func (s CapSet) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes hex digits.
func (s *CapSet) UnmarshalText(b []byte) error {
	v, err := parseCapSet(string(b))
	*s = v
	return err
}

// Names lists the capabilities in s ("CAP_SYS_ADMIN", or "CAP_63" for a
// bit without a name).
func (s CapSet) Names() []string {
	var out []string
	for v := uint64(s); v != 0; v &= v - 1 {
		n := bits.TrailingZeros64(v)
		out = append(out, capName(n))
	}
	return out
}

// Caps are the five capability sets of a process.
type Caps struct {
	Inheritable CapSet `json:"inheritable"`
	Permitted   CapSet `json:"permitted"`
	Effective   CapSet `json:"effective"`
	Bounding    CapSet `json:"bounding"`
	Ambient     CapSet `json:"ambient"`
}

func parseCapSet(s string) (CapSet, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 16, 64)
	return CapSet(v), err
}

// capNames are the Linux capability names by number (linux/capability.h).
func capNames() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
		"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
		"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
		"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
		"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
		"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
		"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

func capName(n int) string {
	if names := capNames(); n < len(names) {
		return names[n]
	}
	return "CAP_" + strconv.Itoa(n)
}

// CapSetOf returns the set holding the named capabilities (with or
// without the CAP_ prefix, any case). Unknown names are an error.
func CapSetOf(names ...string) (CapSet, error) {
	var s CapSet
	for _, name := range names {
		n := strings.ToUpper(name)
		if !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		i := slices.Index(capNames(), n)
		if i < 0 {
			return 0, fmt.Errorf("capability %q unknown", name)
		}
		s |= 1 << i
	}
	return s, nil
}
