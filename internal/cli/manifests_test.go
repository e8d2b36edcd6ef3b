package cli

import (
	"fmt"
	"strings"
)

// The manifests the tests apply, built from the documents they share so
// that each test shows what is its own.

// yamlDocs joins YAML documents into one stream.
func yamlDocs(docs ...string) string { return strings.Join(docs, "---\n") }

// topologyDoc is a Topology; network is its spec's network line ("" for
// none) and nodes its node entries (flow mappings).
func topologyDoc(name, network string, nodes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: rung.dev/v1\nkind: Topology\nmetadata: {name: %s}\nspec:\n", name)
	if network != "" {
		b.WriteString("  " + network + "\n")
	}
	b.WriteString("  nodes:\n")
	for _, n := range nodes {
		b.WriteString("  - " + n + "\n")
	}
	return b.String()
}

// tenantDoc is a trusted Tenant of organization org; more is added to its
// spec (", quota: {…}").
func tenantDoc(name, org, more string) string {
	return fmt.Sprintf("apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: %s}\nspec: {organization: %s, trust: trusted%s}\n", name, org, more)
}

// workloadDoc is a Workload of tenant running busybox with command (a YAML
// flow sequence) and the spec lines in spec.
func workloadDoc(tenant, name, command string, spec ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: %s, tenant: %s}\nspec:\n  image: busybox:latest\n  command: %s\n", name, tenant, command)
	for _, l := range spec {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// sleepCommand is a workload that runs and does nothing.
const sleepCommand = `["sleep", "3600"]`

// httpdCommand serves body as / on port 8080 with busybox httpd.
func httpdCommand(body string) string {
	return `[sh, -c, "echo ` + body + ` > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp"]`
}

// hostSpread is n hosts n1…nN in racks r1…rN and tenant acme's workload
// web of n replicas that prefers one per host (soft, so a lost replica
// can be re-placed on a survivor: at most 2 per host). Each replica logs
// "started HOSTNAME".
func hostSpread(n int) string {
	var nodes []string
	for i := 1; i <= n; i++ {
		nodes = append(nodes, fmt.Sprintf("{name: n%d, domains: {rack: r%d}, capacity: {cpu: 4, memory: 4Gi}}", i, i))
	}
	return yamlDocs(
		topologyDoc(fmt.Sprintf("hosts%d", n), "", nodes...),
		tenantDoc("acme", "acme", ", quota: {cpu: 4, memory: 4Gi, replicas: 10}"),
		workloadDoc("acme", "web", `[sh, -c, "echo started $(hostname); exec sleep 3600"]`,
			fmt.Sprintf("replicas: %d", n),
			"resources: {cpu: 100m, memory: 32Mi}",
			fmt.Sprintf("spread: [{level: host, minDomains: %d, maxPerDomain: 2, soft: true}]", n)),
	)
}

// sleeperDoc is a small Workload of tenant that sleeps, with the spec
// lines in spec.
func sleeperDoc(tenant, name string, spec ...string) string {
	return workloadDoc(tenant, name, sleepCommand, append([]string{"resources: {cpu: 100m, memory: 32Mi}"}, spec...)...)
}
