package v1

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// KindSecret is a tenant's secret values (DESIGN §10): write-only through
// the API, sealed at rest.
const KindSecret = "Secret"

// Limits of a Secret.
const (
	// MaxSecretKeys is the most keys one Secret holds.
	MaxSecretKeys = 64
	// MaxSecretMounts is the most secrets one workload mounts.
	MaxSecretMounts = 64
	// MaxSecretSize bounds the sum of a Secret's keys and values, in bytes.
	MaxSecretSize = 256 << 10
)

// Secret is a tenant's named set of secret values; replicas get them as
// files (spec.secrets of a Workload), never in their environment.
type Secret struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     SecretSpec `json:"spec"`
}

// SecretSpec holds the values by key; each key becomes a file name.
type SecretSpec struct {
	Data map[string]string `json:"data"`
}

// Validate checks a Secret on its own: names, keys usable as file names,
// sizes. Every problem is a *FieldError.
func (s *Secret) Validate() error {
	v := &validator{s: &Set{}}
	v.secret(object{kind: KindSecret, name: displayName(s.Metadata.Tenant + "/" + s.Metadata.Name)}, s)
	return joinFieldErrors(v.errs)
}

// secret checks one Secret (Set.Validate calls it with positions).
func (v *validator) secret(o object, s *Secret) {
	v.tenantObject(o, s.TypeMeta, KindSecret, s.Metadata, "db-password")
	size := 0
	switch n := len(s.Spec.Data); {
	case n == 0:
		v.fail(o, "spec.data", "missing: a secret holds at least one value", "add spec.data: {KEY: VALUE}")
	case n > MaxSecretKeys:
		v.fail(o, "spec.data", fmt.Sprintf("%d keys, more than %d", n, MaxSecretKeys), "split it into several secrets")
	}
	for _, k := range slices.Sorted(maps.Keys(s.Spec.Data)) {
		size += len(k) + len(s.Spec.Data[k])
		if !isSecretKey(k) {
			v.fail(o, join("spec.data", k), fmt.Sprintf("%q is not a usable file name", truncate(k)),
				"use letters, digits, '.', '_' and '-', at most 253, not . or .. (such as password or tls.key)")
		}
	}
	if size > MaxSecretSize {
		v.fail(o, "spec.data", fmt.Sprintf("%d bytes, more than %d", size, MaxSecretSize), "keep large files out of secrets")
	}
}

// isSecretKey: a key is a file name of its own in the replica.
func isSecretKey(k string) bool {
	if k == "" || k == "." || k == ".." || len(k) > 253 {
		return false
	}
	return !strings.ContainsFunc(k, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-')
	})
}
