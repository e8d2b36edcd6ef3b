package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// logDriver serves log files from a directory; nothing else.
type logDriver struct {
	runtime.Driver
	dir      string
	seekable bool
}

func (d logDriver) Logs(ctx context.Context, id string) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(d.dir, id+".log"))
	if err != nil {
		return nil, runtime.ErrNotFound
	}
	if d.seekable {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{f, f}, nil
}

func TestReadTail(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("0123456789abcdef\n", 100) // 1700 bytes
	if err := os.WriteFile(filepath.Join(dir, "long.log"), []byte(long), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "short.log"), []byte("one\ntwo"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, seekable := range []bool{true, false} {
		d := logDriver{dir: dir, seekable: seekable}
		data, trunc, err := readTail(t.Context(), d, "short", 100)
		if err != nil || trunc || string(data) != "one\ntwo" {
			t.Errorf("seekable %v: short: %q %v %v", seekable, data, trunc, err)
		}
		data, trunc, err = readTail(t.Context(), d, "long", 100)
		if err != nil || !trunc || len(data) > 100 || !strings.HasPrefix(string(data), "0123") || !strings.HasSuffix(long, string(data)) {
			t.Errorf("seekable %v: long: %q %v %v", seekable, data, trunc, err)
		}
		if _, _, err := readTail(t.Context(), d, "missing", 100); err == nil {
			t.Errorf("seekable %v: missing log read", seekable)
		}
	}
}

// logNode is a node of ready-made replicas whose logs are files in dir.
type logNode struct {
	dir  string
	recs []replica.Record
}

func (n *logNode) Records() ([]replica.Record, error) { return n.recs, nil }
func (n *logNode) Leftovers() ([]string, error)       { return nil, nil }
func (n *logNode) State(_ context.Context, id string) (runtime.State, error) {
	return runtime.State{ID: id, Status: runtime.Running}, nil
}
func (n *logNode) Start(context.Context, replica.Spec) error { return nil }
func (n *logNode) Remove(context.Context, string) error      { return nil }
func (n *logNode) Driver(context.Context, tenancy.Tier) (runtime.Driver, error) {
	return logDriver{dir: n.dir, seekable: true}, nil
}

// beats records heartbeats.
type beats struct{ got []wire.Heartbeat }

func (b *beats) Heartbeat(_ context.Context, _ string, hb wire.Heartbeat) error {
	b.got = append(b.got, hb)
	return nil
}
func (b *beats) NodeReplicas(context.Context, string) ([]replica.Spec, error) { return nil, nil }

// TestRemoteHeartbeatLogs: a remote agent's heartbeat carries the tails
// of its replicas' logs, bounded in size and number.
func TestRemoteHeartbeatLogs(t *testing.T) {
	dir := t.TempDir()
	n := &logNode{dir: dir}
	for i := range wire.MaxLogReplicas + 3 {
		id := fmt.Sprintf("acme-web-%d", i)
		n.recs = append(n.recs, replica.Record{Spec: replica.Spec{ID: id, Tenant: "acme", Tier: tenancy.Container}})
		data := fmt.Sprintf("hello from %d\n", i)
		if i == 0 {
			data = strings.Repeat("x", 2*wire.MaxLogTail) + "\nlast line\n"
		}
		if i == 1 {
			continue // no log file yet
		}
		if err := os.WriteFile(filepath.Join(dir, id+".log"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	api := &beats{}
	r, err := NewRemote("n1", api, n, tenancy.Set(0).With(tenancy.Container), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Heartbeat(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(api.got) != 1 {
		t.Fatalf("heartbeats: %d", len(api.got))
	}
	logs := api.got[0].Logs
	if len(logs) != wire.MaxLogReplicas {
		t.Fatalf("%d logs, want %d", len(logs), wire.MaxLogReplicas)
	}
	if l := logs[0]; l.ID != "acme-web-0" || !l.Truncated || l.Data != "last line\n" {
		t.Errorf("long log: %+v", l)
	}
	if l := logs[1]; l.ID != "acme-web-2" || l.Tenant != "acme" || l.Truncated || l.Data != "hello from 2\n" {
		t.Errorf("short log: %+v", l)
	}
}
