package tenancy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
)

func TestParseTier(t *testing.T) {
	tests := []struct {
		in      v1.Tier
		want    Tier
		wantErr bool
	}{
		{in: "", want: None},
		{in: v1.TierContainer, want: Container},
		{in: v1.TierSandbox, want: Sandbox},
		{in: v1.TierVM, want: VM},
		{in: v1.TierHost, want: Host},
		{in: "none", wantErr: true}, // None is not a manifest tier
		{in: "VM", wantErr: true},   // names are case-sensitive
		{in: "gvisor", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(string(tt.in), func(t *testing.T) {
			got, err := ParseTier(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownTier) {
					t.Fatalf("ParseTier(%q) error = %v, want ErrUnknownTier", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTier(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseTier(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// Every manifest tier parses, and String gives its manifest name back.
func TestTierRoundTrip(t *testing.T) {
	var got []Tier
	for _, name := range v1.Tiers {
		tier, err := ParseTier(name)
		if err != nil {
			t.Fatalf("ParseTier(%q): %v", name, err)
		}
		if tier.String() != string(name) {
			t.Errorf("ParseTier(%q).String() = %q", name, tier.String())
		}
		got = append(got, tier)
	}
	if diff := cmp.Diff([]Tier{Container, Sandbox, VM, Host}, got); diff != "" {
		t.Errorf("v1.Tiers in order (-want +got):\n%s", diff)
	}
}

func TestTierString(t *testing.T) {
	got := map[Tier]string{}
	for _, tier := range []Tier{None, Container, Sandbox, VM, Host, Host + 1, 200} {
		got[tier] = tier.String()
	}
	want := map[Tier]string{
		None: "none", Container: "container", Sandbox: "sandbox", VM: "vm", Host: "host",
		Host + 1: "tier(5)", 200: "tier(200)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("String (-want +got):\n%s", diff)
	}
}

func TestTierOrderAndMax(t *testing.T) {
	scale := []Tier{None, Container, Sandbox, VM, Host}
	for i, a := range scale {
		for j, b := range scale {
			want := scale[max(i, j)]
			if got := Max(a, b); got != want {
				t.Errorf("Max(%v, %v) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name string
		set  Set
		has  []Tier
		str  string
	}{
		{name: "empty", set: 0, has: nil, str: "[]"},
		{name: "plan default", set: Set(0).With(Container).With(Sandbox), has: []Tier{Container, Sandbox}, str: "[container sandbox]"},
		{name: "insertion order does not matter", set: Set(0).With(VM).With(Container), has: []Tier{Container, VM}, str: "[container vm]"},
		{name: "idempotent", set: Set(0).With(Host).With(Host), has: []Tier{Host}, str: "[host]"},
		{name: "all", set: Set(0).With(Container).With(Sandbox).With(VM).With(Host), has: []Tier{Container, Sandbox, VM, Host}, str: "[container sandbox vm host]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var has []Tier
			for tier := None; tier <= Host; tier++ {
				if tt.set.Has(tier) {
					has = append(has, tier)
				}
			}
			if diff := cmp.Diff(tt.has, has); diff != "" {
				t.Errorf("Has (-want +got):\n%s", diff)
			}
			if got := tt.set.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
		})
	}
}
