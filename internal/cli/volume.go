package cli

import (
	"context"
	"fmt"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
)

// listVolumes is `rung get volumes`: each tenant's volumes with their size,
// data class and uid (a volume made again under a name has a new one).
func listVolumes(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	l, err := o.list(ctx, c, v1.KindVolume, o.tenant)
	if err != nil {
		return table{}, err
	}
	vs, err := decodeItems[v1.Volume](l)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"TENANT", "NAME", "SIZE", "DATA CLASS"}, wide: []string{"UID"}}
	for _, v := range vs {
		size, uid := "-", "-"
		if v.Spec.Size != nil {
			size = v.Spec.Size.String()
		}
		if v.Status != nil && v.Status.UID != "" {
			uid = v.Status.UID
		}
		t.rows = append(t.rows, tableRow{name: v.Metadata.Tenant + "/" + v.Metadata.Name, obj: v,
			cells: []string{v.Metadata.Tenant, v.Metadata.Name, size, fmt.Sprint(v.Spec.DataClass)},
			more:  []string{uid}})
	}
	return t, nil
}
