package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"

	"rung.dev/rung/internal/runtime"
)

// Listed is one container that a runtime's list reports.
type Listed struct {
	ID     string         `json:"id"`
	Status runtime.Status `json:"status"`
	Pid    int            `json:"pid"`
	Bundle string         `json:"bundle"`
}

// List returns the containers of an OCI runtime's state directory (a
// driver's --root, runtime.Config.Dir/state), by running
// `BINARY --root STATE list --format json`. runc and runsc both answer it;
// a state directory that does not exist lists nothing. IDs are the
// containers' (runtime.ContainerID), as the drivers take them.
//
// runsc's sandboxes run in their tenants' user namespaces keep their state
// in directories of their own (runtime.StateDirs): those are listed too.
func List(ctx context.Context, binary, state string) ([]Listed, error) {
	out, err := list(ctx, binary, state)
	if err != nil {
		return nil, err
	}
	for _, dir := range runtime.StateDirs(state)[1:] {
		more, err := list(ctx, binary, dir)
		if err != nil {
			return nil, err
		}
		for _, l := range more {
			l.Bundle = runtime.BoxedBundle(dir, l.Bundle)
			out = append(out, l)
		}
	}
	return out, nil
}

func list(ctx context.Context, binary, state string) ([]Listed, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "--root", state, "list", "--format", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("list %s: %s: %w", state, bytes.TrimSpace(stderr.Bytes()), err)
	}
	var out []Listed
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("list %s: %w", state, err)
	}
	for i := range out {
		out[i].ID = runtime.ContainerID(state, out[i].ID)
	}
	return out, nil
}
