package server

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"time"

	"rung.dev/rung/internal/server/wire"
)

// Watches (DESIGN §8): a list endpoint with ?watch=1 answers a stream of
// JSON lines, one wire.WatchEvent each: first every object as ADDED, then
// each change as it happens, until the client goes away. Long-lived, so
// the server's write timeout is lifted for the stream.

// maxWatch bounds one watch stream; clients watch again after it.
const maxWatch = time.Hour

// watchReplicas streams the changes of view.
func (s *Server) watchReplicas(w http.ResponseWriter, r *http.Request, view func(context.Context) ([]wire.Replica, error)) error {
	ctx, cancel := context.WithTimeout(r.Context(), maxWatch)
	defer cancel()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	first, err := view(ctx)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	seen := map[string]wire.Replica{}
	send := func(typ string, rp wire.Replica) error {
		obj, err := json.Marshal(rp)
		if err != nil {
			return err
		}
		return enc.Encode(wire.WatchEvent{Type: typ, Object: obj})
	}
	for _, rp := range first {
		seen[rp.ID] = rp
		if err := send(wire.WatchAdded, rp); err != nil {
			return nil
		}
	}
	_ = rc.Flush()
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now, err := view(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("watch replicas", "err", err)
			continue
		}
		cur := make(map[string]wire.Replica, len(now))
		for _, rp := range now {
			cur[rp.ID] = rp
			old, ok := seen[rp.ID]
			switch {
			case !ok:
				err = send(wire.WatchAdded, rp)
			case !reflect.DeepEqual(old, rp):
				err = send(wire.WatchModified, rp)
			}
			if err != nil {
				return nil // the client went away
			}
		}
		for id, rp := range seen {
			if _, ok := cur[id]; !ok {
				if send(wire.WatchDeleted, rp) != nil {
					return nil
				}
			}
		}
		seen = cur
		if rc.Flush() != nil {
			return nil
		}
	}
}
