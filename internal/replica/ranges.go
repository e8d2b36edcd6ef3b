package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"rung.dev/rung/internal/durable"
	"rung.dev/rung/internal/uidrange"
)

// ErrTooManyTenants is returned when every UID range is taken.
var ErrTooManyTenants = errors.New("no free tenant uid range")

// rangesFile maps tenant names to their UID range index on this node.
// Indices are handed out once and never reused, so two tenants can never
// share a range, even after one is deleted.
type rangesFile struct {
	Next    int            `json:"next"`
	Tenants map[string]int `json:"tenants"`
}

// TenantRange returns the tenant's UID/GID range on this node, allocating
// one the first time the tenant is seen. The registry is a JSON file under
// the data directory, updated under an exclusive lock and replaced
// atomically.
func (n *Node) TenantRange(tenant string) (uidrange.Range, error) {
	path := filepath.Join(n.dir, "tenants.json")
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return uidrange.Range{}, fmt.Errorf("tenant ranges: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return uidrange.Range{}, fmt.Errorf("tenant ranges: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	rf := rangesFile{Tenants: map[string]int{}}
	switch data, err := os.ReadFile(path); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return uidrange.Range{}, fmt.Errorf("tenant ranges: %w", err)
	default:
		if err := json.Unmarshal(data, &rf); err != nil {
			// Never guess: a corrupt registry could hand out a used range.
			return uidrange.Range{}, fmt.Errorf("tenant ranges: %s is corrupt (fix or remove it by hand): %w", path, err)
		}
		if rf.Tenants == nil {
			rf.Tenants = map[string]int{}
		}
	}
	if i, ok := rf.Tenants[tenant]; ok {
		return uidrange.ForTenant(i)
	}
	r, err := uidrange.ForTenant(rf.Next)
	if err != nil {
		return uidrange.Range{}, fmt.Errorf("tenant %s: %w: %w", tenant, ErrTooManyTenants, err)
	}
	rf.Tenants[tenant] = rf.Next
	rf.Next++
	data, err := json.MarshalIndent(rf, "", "  ")
	if err != nil {
		return uidrange.Range{}, err
	}
	tmp := path + ".tmp"
	if err := durable.WriteFile(tmp, data); err != nil {
		return uidrange.Range{}, fmt.Errorf("tenant ranges: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return uidrange.Range{}, fmt.Errorf("tenant ranges: %w", err)
	}
	return r, nil
}

// Tenants lists the tenants with a range on this node, sorted.
func (n *Node) Tenants() ([]string, error) {
	data, err := os.ReadFile(filepath.Join(n.dir, "tenants.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rf rangesFile
	if err := json.Unmarshal(data, &rf); err != nil {
		return nil, err
	}
	var out []string
	for t := range rf.Tenants {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}
