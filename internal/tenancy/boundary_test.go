package tenancy

import "testing"

func TestBoundaryAndEffective(t *testing.T) {
	var (
		h1    = Place{Node: "h1", Host: "h1"}
		h1vm1 = Place{Node: "h1-vm1", Host: "h1"}
		h1vm2 = Place{Node: "h1-vm2", Host: "h1"}
		h2    = Place{Node: "h2", Host: "h2"}
		h2vm1 = Place{Node: "h2-vm1", Host: "h2"}
	)
	tests := []struct {
		name     string
		a, b     Place
		boundary Tier
		// effective(a→b) for each tier of a's own wrapper, weakest first:
		// Container, Sandbox, VM, Host.
		effective [4]Tier
	}{
		{
			name: "same physical node", a: h1, b: h1,
			boundary: None, effective: [4]Tier{Container, Sandbox, VM, Host},
		},
		{
			name: "same VM node", a: h1vm1, b: h1vm1,
			boundary: None, effective: [4]Tier{Container, Sandbox, VM, Host},
		},
		{
			name: "two VM nodes on one host", a: h1vm1, b: h1vm2,
			boundary: VM, effective: [4]Tier{VM, VM, VM, Host},
		},
		{
			// The host's kernel reaches every VM on it: nothing extra.
			name: "attacker on the host kernel, victim in a VM on it", a: h1, b: h1vm1,
			boundary: None, effective: [4]Tier{Container, Sandbox, VM, Host},
		},
		{
			name: "attacker in a VM, victim on the host kernel", a: h1vm1, b: h1,
			boundary: VM, effective: [4]Tier{VM, VM, VM, Host},
		},
		{
			name: "different hosts", a: h1, b: h2,
			boundary: Host, effective: [4]Tier{Host, Host, Host, Host},
		},
		{
			name: "VM nodes on different hosts", a: h1vm1, b: h2vm1,
			boundary: Host, effective: [4]Tier{Host, Host, Host, Host},
		},
		{
			name: "host kernel vs VM on another host", a: h1, b: h2vm1,
			boundary: Host, effective: [4]Tier{Host, Host, Host, Host},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Boundary(tt.a, tt.b); got != tt.boundary {
				t.Errorf("Boundary(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.boundary)
			}
			for i, tier := range []Tier{Container, Sandbox, VM, Host} {
				if got := Effective(tier, tt.a, tt.b); got != tt.effective[i] {
					t.Errorf("Effective(%v, %v, %v) = %v, want %v", tier, tt.a, tt.b, got, tt.effective[i])
				}
			}
		})
	}
}

func TestPlaceIsVMNode(t *testing.T) {
	if (Place{Node: "h1", Host: "h1"}).IsVMNode() {
		t.Error("physical node h1 reported as a VM node")
	}
	if !(Place{Node: "h1-vm1", Host: "h1"}).IsVMNode() {
		t.Error("VM node h1-vm1 not reported as a VM node")
	}
}
