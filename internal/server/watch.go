package server

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// Watches (DESIGN §8): a list endpoint with ?watch=1 answers a stream of
// JSON lines, one wire.WatchEvent each: first every object as ADDED, then
// each change as it happens, until the client goes away. Long-lived, so
// the server's write timeout is lifted for the stream.

// maxWatch bounds one watch stream; clients watch again after it.
const maxWatch = time.Hour

// watchStream starts a watch answer: JSON lines, no write deadline. send
// writes one event; flush pushes what was sent to the client.
func watchStream(w http.ResponseWriter) (send func(typ string, obj any) error, flush func() error) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send = func(typ string, obj any) error {
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		return enc.Encode(wire.WatchEvent{Type: typ, Object: b})
	}
	return send, rc.Flush
}

// watchPolled streams the changes of a list computed on demand (replicas,
// nodes): the list, then what changed between two looks, keyed by key.
func watchPolled[T any](s *Server, w http.ResponseWriter, r *http.Request, what string, view func(context.Context) ([]T, error), key func(T) string) error {
	ctx, cancel := context.WithTimeout(r.Context(), maxWatch)
	defer cancel()
	first, err := view(ctx)
	if err != nil {
		return err
	}
	sendAny, flush := watchStream(w)
	send := func(typ string, x T) error { return sendAny(typ, x) }
	seen := map[string]T{}
	for _, x := range first {
		seen[key(x)] = x
		if err := send(wire.WatchAdded, x); err != nil {
			return nil
		}
	}
	_ = flush()
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
			s.log.Warn("watch "+what, "err", err)
			continue
		}
		cur := make(map[string]T, len(now))
		for _, x := range now {
			k := key(x)
			cur[k] = x
			old, ok := seen[k]
			switch {
			case !ok:
				err = send(wire.WatchAdded, x)
			case !reflect.DeepEqual(old, x):
				err = send(wire.WatchModified, x)
			}
			if err != nil {
				return nil // the client went away
			}
		}
		for k, x := range seen {
			if _, ok := cur[k]; !ok {
				if send(wire.WatchDeleted, x) != nil {
					return nil
				}
			}
		}
		seen = cur
		if flush() != nil {
			return nil
		}
	}
}

// watchObjects streams a list of stored objects (?watch=1 on a list
// endpoint): each object as ADDED, as of one revision, then every change
// under dir from the next revision on (DELETED carries the object as it
// was). A tenant role watching tenants sees its own only.
func (s *Server) watchObjects(w http.ResponseWriter, r *http.Request, k kind, dir string, p auth.Principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), maxWatch)
	defer cancel()
	only := "" // one key, for a tenant role's own tenant
	if k.name == v1.KindTenant && p.Role != auth.Operator {
		dir, only = k.dir, tenantKey(p.Tenant)
	}
	if dir == "" {
		// Nothing this principal may see of the kind.
		_, flush := watchStream(w)
		_ = flush()
		<-ctx.Done()
		return nil
	}
	vals, rev, err := s.store.List(ctx, dir)
	if err != nil {
		return err
	}
	ch, err := s.store.Watch(ctx, dir, rev+1)
	if err != nil {
		return err
	}
	send, flush := watchStream(w)
	last := map[string]json.RawMessage{}
	for _, v := range vals {
		if only != "" && v.Key != only {
			continue
		}
		last[v.Key] = v.Data
		if send(wire.WatchAdded, json.RawMessage(v.Data)) != nil {
			return nil
		}
	}
	if flush() != nil {
		return nil
	}
	for ev := range ch {
		if ev.Err != nil {
			s.log.Info("watch ended", "dir", dir, "err", ev.Err)
			return nil
		}
		key := ev.Value.Key
		if only != "" && key != only {
			continue
		}
		var err error
		switch ev.Type {
		case store.EventPut:
			typ := wire.WatchModified
			if _, ok := last[key]; !ok {
				typ = wire.WatchAdded
			}
			last[key] = ev.Value.Data
			err = send(typ, json.RawMessage(ev.Value.Data))
		case store.EventDelete:
			if old, ok := last[key]; ok {
				delete(last, key)
				err = send(wire.WatchDeleted, old)
			}
		}
		if err != nil || flush() != nil {
			return nil // the client went away
		}
	}
	return nil
}

// watchEvents streams the events the caller may see after seq after (0:
// from now on), each as ADDED, as they are appended to the audit log.
func (s *Server) watchEvents(w http.ResponseWriter, r *http.Request, after int64, keep func(wire.Event) bool) error {
	ctx, cancel := context.WithTimeout(r.Context(), maxWatch)
	defer cancel()
	if after == 0 {
		head, err := s.auditHead(ctx)
		if err != nil {
			return err
		}
		after = int64(head)
	}
	send, flush := watchStream(w)
	if flush() != nil {
		return nil
	}
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		page, err := s.eventsAfter(ctx, after, maxEvents, keep)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("watch events", "err", err)
		} else {
			for _, e := range page.Events {
				if send(wire.WatchAdded, e) != nil {
					return nil
				}
			}
			after = page.Next
			if len(page.Events) > 0 && flush() != nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
