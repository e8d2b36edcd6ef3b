// Package tenancy is the tenancy scale: the ordered tiers, how much
// isolation a pair of replicas needs (the rule table and operator rules),
// and how much a placement gives them (the effective boundary). It is pure:
// no I/O, no clocks.
package tenancy

import (
	"errors"
	"fmt"

	v1 "rung.dev/rung/api/v1"
)

// Tier is an amount of isolation. The zero value None is "nothing extra",
// the boundary between replicas on one node.
type Tier uint8

// The scale, weakest first.
const (
	None Tier = iota
	Container
	Sandbox
	VM
	Host
)

// ErrUnknownTier is returned for a tier name that is not on the scale.
var ErrUnknownTier = errors.New("unknown tier")

var tierNames = [...]string{"none", "container", "sandbox", "vm", "host"}

// String returns the manifest name of the tier.
func (t Tier) String() string {
	if int(t) < len(tierNames) {
		return tierNames[t]
	}
	return fmt.Sprintf("tier(%d)", uint8(t))
}

// ParseTier parses a manifest tier name; "" is None.
func ParseTier(s v1.Tier) (Tier, error) {
	switch s {
	case "":
		return None, nil
	case v1.TierContainer:
		return Container, nil
	case v1.TierSandbox:
		return Sandbox, nil
	case v1.TierVM:
		return VM, nil
	case v1.TierHost:
		return Host, nil
	}
	return None, fmt.Errorf("%w %q: use one of container, sandbox, vm, host", ErrUnknownTier, string(s))
}

// Max returns the stronger tier.
func Max(a, b Tier) Tier {
	if a > b {
		return a
	}
	return b
}

// Set is a set of tiers, e.g. the runtimes a node offers.
type Set uint8

// Has reports whether t is in the set.
func (s Set) Has(t Tier) bool { return s&(1<<t) != 0 }

// With returns the set with t added.
func (s Set) With(t Tier) Set { return s | 1<<t }

// String lists the tiers in the set, weakest first.
func (s Set) String() string {
	out := "["
	for t := Container; t <= Host; t++ {
		if s.Has(t) {
			if len(out) > 1 {
				out += " "
			}
			out += t.String()
		}
	}
	return out + "]"
}

// MarshalText writes the tier's manifest name.
func (t Tier) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses a manifest name ("none" is None).
func (t *Tier) UnmarshalText(b []byte) error {
	if string(b) == "none" {
		*t = None
		return nil
	}
	v, err := ParseTier(v1.Tier(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}
