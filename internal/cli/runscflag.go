package cli

import "rung.dev/rung/internal/plugins"

// The operator's runsc, on rung up, rung agent and rung demo: a current
// runsc runs sandboxes with gVisor's network stack, so they join tenant
// networks (docs/networks.md); the probe at node open decides.
const (
	runscFlag = "runsc"
	runscHelp = "runsc binary for the sandbox tier; if it passes a probe at start (a real --network=sandbox sandbox), " +
		"sandboxes join tenant networks (make runsc builds one in bin/); empty: runsc in PATH, sandbox networks refused"
)

// defaultRunsc is --runsc's default: bin/runsc beside the rung binary.
func defaultRunsc() string { return plugins.DefaultRunsc() }
