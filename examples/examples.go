// Package examples embeds the shipped example manifests, so `rung demo`
// works from the binary alone.
package examples

import "embed"

// FS holds every example directory (university, public-cloud, four-questions).
//
//go:embed university/*.yaml public-cloud/*.yaml four-questions/*.yaml
var FS embed.FS

// Names lists the examples in the order the demo shows them.
var Names = []string{"university", "public-cloud", "four-questions"}
