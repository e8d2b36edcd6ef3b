package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// LogNode is a Node whose replicas' logs can be read: *replica.Node, whose
// drivers keep each replica's standard output and error in a log file.
type LogNode interface {
	Driver(ctx context.Context, t tenancy.Tier) (runtime.Driver, error)
}

// maxLogsJSON bounds the JSON size of the logs of one heartbeat, well
// under the API's request limit (wire.MaxBody).
const maxLogsJSON = wire.MaxBody / 2

// LogTails reads the end of each replica's log on this node: at most
// wire.MaxLogReplicas replicas (by id), wire.MaxLogTail bytes each,
// starting at a line boundary. A node that cannot read logs, or a replica
// without a log file, is left out.
func (a *Agent) LogTails(ctx context.Context) []wire.ReplicaLog {
	ln, ok := a.node.(LogNode)
	if !ok {
		return nil
	}
	recs, err := a.node.Records()
	if err != nil {
		return nil
	}
	out := []wire.ReplicaLog{}
	size := 0
	for _, r := range recs {
		if len(out) >= wire.MaxLogReplicas {
			break
		}
		d, err := ln.Driver(ctx, r.Spec.Tier)
		if err != nil {
			continue
		}
		data, truncated, err := readTail(ctx, d, r.Spec.ID, wire.MaxLogTail)
		if err != nil {
			if !errors.Is(err, runtime.ErrNotFound) {
				a.log.Debug("read replica log", "replica", r.Spec.ID, "err", err)
			}
			continue
		}
		l := wire.ReplicaLog{ID: r.Spec.ID, Tenant: r.Spec.Tenant, Data: string(data), Truncated: truncated}
		enc, _ := json.Marshal(l)
		if size+len(enc) > maxLogsJSON {
			break
		}
		size += len(enc)
		out = append(out, l)
	}
	return out
}

// readTail returns the last max bytes of replica id's log, from the first
// line boundary in them when the log is longer.
func readTail(ctx context.Context, d runtime.Driver, id string, max int) ([]byte, bool, error) {
	rc, err := d.Logs(ctx, id)
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	var data []byte
	truncated := false
	if s, ok := rc.(io.Seeker); ok {
		end, err := s.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, false, err
		}
		start := max64(end-int64(max), 0)
		truncated = start > 0
		if _, err := s.Seek(start, io.SeekStart); err != nil {
			return nil, false, err
		}
		if data, err = io.ReadAll(io.LimitReader(rc, int64(max))); err != nil {
			return nil, false, err
		}
	} else {
		// Not seekable: keep the last max bytes of a bounded read.
		buf := make([]byte, 32<<10)
		for {
			n, err := rc.Read(buf)
			data = append(data, buf[:n]...)
			if len(data) > max {
				data, truncated = append(data[:0:0], data[len(data)-max:]...), true
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, false, err
			}
		}
	}
	if truncated {
		if i := bytes.IndexByte(data, '\n'); i >= 0 && i < len(data)-1 {
			data = data[i+1:]
		}
	}
	return data, truncated, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// replica.Node reads logs.
var _ LogNode = (*replica.Node)(nil)
