package tenancy

import "fmt"

// DefaultRule is one row of the default rule table (DESIGN §2), as
// `rung rules` and docs/rules.md show it.
type DefaultRule struct {
	// Number is the row's place in the table; the first matching row wins.
	Number int `json:"number"`
	// Name is the row's short name, printed after its number everywhere
	// ("rule 4 (same organization)").
	Name string `json:"name"`
	// When is the condition on the attacker a and the victim b.
	When     string `json:"when"`
	Required Tier   `json:"required"`
	// Why is the row's reason.
	Why string `json:"why"`
}

// Ref is how the row is named wherever a decision is printed.
func (r DefaultRule) Ref() string { return fmt.Sprintf("rule %d (%s)", r.Number, r.Name) }

// DefaultTable is the default rule table, in order.
var DefaultTable = []DefaultRule{
	{1, "restricted data", "b.dataClass == restricted and different tenants", Host, "regulated data never shares hardware with another tenant"},
	{2, "different class or privilege", "different data class, or different privilege level", VM, "keep data of different sensitivity and different privilege levels off one shared kernel"},
	{3, "same tenant", "same tenant", Container, "a tenant's own workloads, same class and privilege"},
	{4, "same organization", "same organization, different tenants", Container, "research groups of one university: containers are enough"},
	{5, "trusted other organization", "different organization, a.trust == trusted", Sandbox, "vetted code from another company"},
	{6, "other organization", "different organization, otherwise", VM, "public cloud: slide up the scale to virtual machines"},
}
