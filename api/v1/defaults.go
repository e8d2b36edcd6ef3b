package v1

// Defaults of DESIGN.md §4 for fields a manifest leaves out.
const (
	DefaultTrust     = TrustUntrusted
	DefaultDataClass = DataInternal
	DefaultPrivilege = PrivilegeStandard
	DefaultReplicas  = 1
)

// ApplyDefaults fills the fields a manifest may leave out: a tenant's
// organization is its own name, trust is untrusted; a workload's data class
// is internal, privilege standard and replicas 1. It only sets empty fields,
// so it may be called more than once.
func (s *Set) ApplyDefaults() {
	for i := range s.Tenants {
		t := &s.Tenants[i]
		if t.Spec.Organization == "" {
			t.Spec.Organization = t.Metadata.Name
		}
		if t.Spec.Trust == "" {
			t.Spec.Trust = DefaultTrust
		}
	}
	for i := range s.Workloads {
		w := &s.Workloads[i].Spec
		if w.DataClass == "" {
			w.DataClass = DefaultDataClass
		}
		if w.Privilege == "" {
			w.Privilege = DefaultPrivilege
		}
		if w.Replicas == nil {
			n := DefaultReplicas
			w.Replicas = &n
		}
	}
}
