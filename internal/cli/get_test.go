package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
)

// lines splits output into lines with their spaces squeezed.
func lines(out string) []string {
	var rows []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	return rows
}

// TestGetAsKubectl checks kubectl's conventions on a real control plane
// (rung up, the university example): NAME arguments filter, --tenant
// holds everywhere, kinds by any name, every -o format, usage errors exit
// 2, names complete from the server.
func TestGetAsKubectl(t *testing.T) {
	startUp(t)
	if code, _, errs := rungCmd(t, "apply", "-f", "../../examples/university"); code != 0 {
		t.Fatalf("apply: %d %s", code, errs)
	}

	// Names filter, by TENANT/NAME or NAME; a missing one exits 1 after
	// the others are printed.
	code, out, _ := rungCmd(t, "get", "wl", "sequencer", "geology/rocks")
	if rows := lines(out); code != 0 || len(rows) != 3 || !strings.HasPrefix(rows[1], "biology sequencer") || !strings.HasPrefix(rows[2], "geology rocks") {
		t.Errorf("get wl sequencer geology/rocks: %d\n%s", code, out)
	}
	code, out, errs := rungCmd(t, "get", "tenant", "biology", "nope")
	if rows := lines(out); code != ExitFailure || len(rows) != 2 || !strings.HasPrefix(rows[1], "biology ") || !strings.Contains(errs, `tenant "nope" not found`) {
		t.Errorf("get tenant biology nope: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = rungCmd(t, "get", "nodes", "h1")
	if rows := lines(out); code != 0 || len(rows) != 3 || !strings.HasPrefix(rows[1], "h1 ") {
		t.Errorf("get nodes h1: %d\n%s", code, out)
	}
	// ...while without a name every node is listed.
	if code, out, _ := rungCmd(t, "get", "no"); code != 0 || len(lines(out)) != 6 {
		t.Errorf("get no: %d\n%s", code, out)
	}

	// --tenant everywhere it means something, refused where it doesn't.
	code, out, _ = rungCmd(t, "get", "events", "--tenant", "geology")
	if code != 0 || !strings.Contains(out, "Workload geology/rocks") || strings.Contains(out, "biology/") {
		t.Errorf("get events --tenant geology: %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "get", "plan", "--tenant", "geology")
	if code != 0 || !strings.Contains(out, "geology/rocks") || slices.ContainsFunc(lines(out), func(r string) bool { return strings.HasPrefix(r, "biology/") }) {
		t.Errorf("get plan --tenant geology: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "get", "tn", "--tenant", "geology"); code != 0 || len(lines(out)) != 2 || !strings.Contains(out, "geology") {
		t.Errorf("get tn --tenant geology: %d\n%s", code, out)
	}
	if code, _, errs := rungCmd(t, "get", "topologies", "--tenant", "geology"); code != ExitInvalid || !strings.Contains(errs, "--tenant") {
		t.Errorf("get topologies --tenant: %d %s", code, errs)
	}

	// Plurals.
	if code, out, _ := rungCmd(t, "get", "policy"); code != 0 || strings.TrimSpace(out) != "no policies" {
		t.Errorf("get policy: %d %q", code, out)
	}
	if code, _, errs := rungCmd(t, "get", "wl", "--tenant", "nobody"); code != ExitFailure || !strings.Contains(errs, `tenant "nobody" not found`) {
		t.Errorf("get wl --tenant nobody: %d %q", code, errs)
	}

	// -o json carries what the text shows: the placements.
	code, out, _ = rungCmd(t, "get", "workloads", "-o", "json")
	var list struct {
		Items []struct {
			Metadata struct{ Name, Tenant string }
			Status   struct {
				Placements []struct{ Node, Tier string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.Items) != 4 {
		t.Fatalf("get workloads -o json: %d %v\n%s", code, err, out)
	}
	for _, it := range list.Items {
		if it.Metadata.Name == "sequencer" && (len(it.Status.Placements) != 3 || it.Status.Placements[0].Node == "" || it.Status.Placements[0].Tier != "container") {
			t.Errorf("sequencer's placements in -o json: %+v", it.Status.Placements)
		}
	}
	code, out, _ = rungCmd(t, "get", "wl", "-o", "name")
	if want := []string{"workload/biology/notebook", "workload/biology/sequencer", "workload/geology/maps", "workload/geology/rocks"}; code != 0 || !slices.Equal(lines(out), want) {
		t.Errorf("get wl -o name: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "get", "wl", "-o", "wide"); code != 0 || !strings.Contains(lines(out)[0], "IMAGE RESTART MINIMUM TIER") || !strings.Contains(out, "busybox") {
		t.Errorf("get wl -o wide: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "get", "wl", "sequencer", "-o", "yaml"); code != 0 || !strings.Contains(out, "placements:") || strings.Contains(out, "items:") {
		t.Errorf("get wl sequencer -o yaml: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "describe", "wl", "biology/sequencer", "-o", "json"); code != 0 || !strings.Contains(out, `"placements"`) || !strings.Contains(out, `"events"`) {
		t.Errorf("describe -o json: %d\n%s", code, out)
	}

	// apply and delete print the same ways: names, or the API's results.
	code, out, _ = rungCmd(t, "apply", "-f", "../../examples/university", "-o", "name")
	if rows := lines(out); code != 0 || !slices.Contains(rows, "tenant/biology") || !slices.Contains(rows, "workload/geology/rocks") {
		t.Errorf("apply -o name: %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "delete", "wl", "biology/notebook", "maps", "-o", "json")
	var deleted struct{ Items []change }
	if err := json.Unmarshal([]byte(out), &deleted); code != 0 || err != nil ||
		!slices.Equal(deleted.Items, []change{{Kind: "Workload", Tenant: "biology", Name: "notebook", Result: "deleted"}, {Kind: "Workload", Tenant: "geology", Name: "maps", Result: "deleted"}}) {
		t.Errorf("delete two -o json: %d %v\n%s", code, err, out)
	}

	// Usage errors exit 2, and say how to get help.
	for _, args := range [][]string{{"get"}, {"get", "wl", "-o", "xml"}, {"describe", "wl"}, {"nope"}, {"token", "nope"}, {"get", "--nope"}, {"get", "gadgets"}, {"delete", "wl"}, {"plan", "-f", "../../examples/university", "-o", "name"}} {
		if code, _, errs := rungCmd(t, args...); code != ExitInvalid || errs == "" {
			t.Errorf("rung %s: exit %d, want 2 (%s)", strings.Join(args, " "), code, errs)
		}
	}

	// Completion asks the server for names.
	code, out, _ = rungCmd(t, "__complete", "get", "wl", "")
	if code != 0 || !slices.Contains(lines(out), "biology/sequencer") || !slices.Contains(lines(out), "geology/rocks") {
		t.Errorf("complete get wl: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "__complete", "get", "wl", "--tenant", "geology", ""); code != 0 || slices.Contains(lines(out), "biology/sequencer") || !slices.Contains(lines(out), "geology/rocks") {
		t.Errorf("complete get wl --tenant geology: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "__complete", "describe", "to"); code != 0 || !slices.Contains(lines(out), "topologies") || slices.Contains(lines(out), "nodes") {
		t.Errorf("complete describe kinds: %d\n%s", code, out)
	}
}

// TestVersion: rung version names the Go it was built with and looks up
// each tier's runtime.
func TestVersion(t *testing.T) {
	code, out, errs := rungCmd(t, "version", "-o", "json")
	var v versionOut
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("version -o json: %d %v %s", code, err, errs)
	}
	if v.Go != goruntime.Version() || v.Version == "" || len(v.Runtimes) != 3 || v.Runtimes[0].Binary != "runc" {
		t.Errorf("version: %+v", v)
	}
	// runc is installed here (make deps): found with its version.
	if v.Runtimes[0].Path == "" || !strings.Contains(v.Runtimes[0].Version, "runc") {
		t.Errorf("runc: %+v", v.Runtimes[0])
	}
	if code, out, _ := rungCmd(t, "version"); code != 0 || !strings.Contains(out, "container  runc") && !strings.Contains(strings.Join(lines(out), "\n"), "container runc") {
		t.Errorf("version: %d\n%s", code, out)
	}
}

// TestRules: rung rules prints the default table with each rule's name
// and text, and a Policy's own rules first.
func TestRules(t *testing.T) {
	t.Setenv("RUNG_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv(TokenEnv, "")
	code, out, errs := rungCmd(t, "rules")
	if code != 0 || !strings.Contains(out, "rule 4 (same organization)") || !strings.Contains(out, "research groups") || !strings.Contains(out, "no control plane") {
		t.Fatalf("rules: %d\n%s%s", code, out, errs)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(`apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec:
  rules:
  - name: bank-own-hardware
    when: victim.tenant.name == "bank" && attacker.tenant.name != "bank"
    require: host
`), 0o644)
	code, out, errs = rungCmd(t, "rules", "-f", dir)
	rows := lines(out)
	i := slices.IndexFunc(rows, func(r string) bool { return strings.HasPrefix(r, "policy bank-own-hardware host victim.tenant.name") })
	j := slices.IndexFunc(rows, func(r string) bool { return strings.HasPrefix(r, "rule 1 (restricted data) host") })
	if code != 0 || i < 0 || j < i {
		t.Errorf("rules -f: %d\n%s%s", code, out, errs)
	}
}
