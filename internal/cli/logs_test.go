package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/server/wire"
)

// TestLogsEndToEnd: `rung up` with its node agent runs the university
// example under runc; each workload echoes a line, and `rung logs` shows it.
func TestLogsEndToEnd(t *testing.T) {
	startUpWithAgent(t)
	example := filepath.Join("..", "..", "examples", "university")
	if code, _, stderr := rungCmd(t, "apply", "-f", example); code != ExitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}

	// The agent starts the replicas, then publishes their logs every 2s.
	var out, stderr string
	var code int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, out, stderr = rungCmd(t, "logs", "biology/sequencer", "--replica", "1", "--tail", "5")
		if code == ExitOK && strings.Contains(out, "sequencing") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rung logs: exit %d, stdout %q, stderr %q; want a line \"sequencing\"", code, out, stderr)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if strings.TrimSpace(out) != "sequencing" {
		t.Errorf("one replica's log: %q, want just its line", out)
	}

	// Every replica of a workload, as JSON; the workload named without its
	// tenant.
	deadline = time.Now().Add(time.Minute)
	for {
		code, out, stderr = rungCmd(t, "logs", "rocks", "-o", "json")
		var wl wire.WorkloadLogs
		if code == ExitOK && json.Unmarshal([]byte(out), &wl) == nil && len(wl.Replicas) == 2 &&
			allSay(wl.Replicas, "rocks") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rung logs rocks -o json: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		time.Sleep(250 * time.Millisecond)
	}

	if code, _, stderr := rungCmd(t, "logs", "biology/nope"); code == ExitOK || !strings.Contains(stderr, "not found") {
		t.Errorf("missing workload: exit %d, stderr %q", code, stderr)
	}
}

func allSay(rs []wire.ReplicaLines, line string) bool {
	for _, r := range rs {
		if len(r.Lines) == 0 || r.Lines[len(r.Lines)-1] != line {
			return false
		}
	}
	return true
}
