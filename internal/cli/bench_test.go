package cli

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchPlacement(t *testing.T) {
	cmd := newBenchCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"placement", "--nodes", "100,120", "--replicas", "300", "--tenants", "5", "--runs", "1"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("bench placement: %v\n%s", err, out.String())
	}
	if testing.Verbose() {
		t.Log(out.String())
	}
	lines := strings.Split(out.String(), "\n")
	var rows []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 3 && (f[0] == "100" || f[0] == "120") {
			rows = append(rows, strings.Join(f[:3], " "))
		}
	}
	if got, want := strings.Join(rows, "; "), "100 300 300; 120 300 300"; got != want {
		t.Errorf("rows (nodes replicas placed) = %q, want %q\n%s", got, want, out.String())
	}
	for _, want := range []string{"machine: ", "PLACEMENTS/S", "LOWER BOUND", "goals (issue 3)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchPlacementInvalid(t *testing.T) {
	for _, args := range [][]string{{"--nodes", "0"}, {"--replicas", "0"}, {"--runs", "0"}} {
		cmd := newBenchCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append([]string{"placement"}, args...))
		err := cmd.Execute()
		if e, ok := errors.AsType[*exitError](err); !ok || e.code != ExitInvalid {
			t.Errorf("%v: error %v, want exit %d", args, err, ExitInvalid)
		}
	}
}

func TestCPUModel(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
	tests := []struct{ path, want string }{
		{p, "AMD EPYC 7B13"},
		{write(t, dir, "empty", ""), "unknown CPU"},
		{filepath.Join(dir, "missing"), "unknown CPU"},
	}
	for _, tt := range tests {
		if got := cpuModel(tt.path); got != tt.want {
			t.Errorf("cpuModel(%s) = %q, want %q", filepath.Base(tt.path), got, tt.want)
		}
	}
}
