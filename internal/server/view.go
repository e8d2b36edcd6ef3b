package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// plan serves the scheduler's current plan of everything stored, in the
// `rung plan -o json` shape. A tenant role sees its own replicas only,
// with other tenants' names taken out of the reasons.
func (s *Server) plan(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.authorize(ctx, auth.Get, auth.Object{Kind: auth.KindPlan}, ""); err != nil {
		return err
	}
	pl, err := s.planner.current(ctx)
	if err != nil {
		return err
	}
	p := principal(ctx)
	if p.Role == auth.Operator {
		writeJSON(w, http.StatusOK, pl.result)
		return nil
	}
	writeJSON(w, http.StatusOK, tenantView(pl.result, p.Tenant, pl.tenants))
	return nil
}

// tenantView is the part of res that tenant may see: its own replicas,
// with reasons that name no other tenant, none of its workloads and no
// node or host where only other tenants run ("another tenant's replica",
// "a node").
func tenantView(res *scheduler.Result, tenant string, tenants []string) *scheduler.Result {
	r := redactor{others: map[string]bool{}, places: map[string]bool{}}
	for _, t := range tenants {
		if t != tenant {
			r.others[t] = true
		}
	}
	own := tenant + "/"
	mine := map[string]bool{}
	for _, pl := range res.Placements {
		if strings.HasPrefix(pl.Workload, own) {
			mine[pl.Node], mine[pl.Host] = true, true
		}
	}
	for _, pl := range res.Placements {
		for _, n := range []string{pl.Node, pl.Host} {
			if n != "" && !mine[n] && !strings.HasPrefix(pl.Workload, own) {
				r.places[n] = true
			}
		}
	}
	out := &scheduler.Result{Placements: []scheduler.Placement{}, Unplaced: []scheduler.Unplaced{}}
	for _, pl := range res.Placements {
		if strings.HasPrefix(pl.Workload, own) {
			pl.Reason = r.redact(pl.Reason)
			out.Placements = append(out.Placements, pl)
		}
	}
	for _, u := range res.Unplaced {
		if strings.HasPrefix(u.Workload, own) {
			u.Reasons = slices.Clone(u.Reasons)
			for i := range u.Reasons {
				u.Reasons[i] = r.redact(u.Reasons[i])
			}
			out.Unplaced = append(out.Unplaced, u)
		}
	}
	return out
}

var (
	workloadRef = regexp.MustCompile(`\b([a-z0-9][a-z0-9-]*)/[a-z0-9][a-z0-9-]*(\[[0-9]+\])?`)
	tenantRef   = regexp.MustCompile(`\btenants? ([a-z0-9][a-z0-9-]*)\b`)
	placeRef    = regexp.MustCompile(`\b(node|host) ([A-Za-z0-9][A-Za-z0-9._-]*)`)
)

// redactor takes other tenants out of one tenant's explanations.
type redactor struct {
	others map[string]bool // other tenants' names
	places map[string]bool // nodes and hosts where only other tenants run
}

// redact replaces references to other tenants ("geology/rocks[0]",
// "tenant geology") and to the nodes only they use with words that name
// no one.
func (r redactor) redact(s string) string {
	s = workloadRef.ReplaceAllStringFunc(s, func(m string) string {
		t, _, _ := strings.Cut(m, "/")
		if r.others[t] {
			return "another tenant's replica"
		}
		return m
	})
	s = tenantRef.ReplaceAllStringFunc(s, func(m string) string {
		_, t, _ := strings.Cut(m, " ")
		if r.others[t] {
			return "another tenant"
		}
		return m
	})
	return placeRef.ReplaceAllStringFunc(s, func(m string) string {
		what, name, _ := strings.Cut(m, " ")
		if r.places[name] {
			return "a " + what
		}
		return m
	})
}

// maxEvents bounds one page of GET /v1/events.
const maxEvents = 1000

// maxScan bounds the audit entries one request of GET /v1/events reads.
const maxScan = 10000

// events serves the event log: changes and denials, oldest first, after
// ?after=SEQ (or with ?tail the latest), at most ?limit=N. A tenant role
// sees events about its own tenant's objects caused by itself or an
// operator.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.authorize(ctx, auth.List, auth.Object{Kind: auth.KindEvent}, ""); err != nil {
		return err
	}
	q := r.URL.Query()
	after, err := queryInt(q.Get("after"), 0)
	if err != nil {
		return badRequest("after: %v; pass the seq of the last event seen, e.g. ?after=120", err)
	}
	limit, err := queryInt(q.Get("limit"), 100)
	if err != nil || limit < 1 || limit > maxEvents {
		return badRequest("limit: want a number from 1 to %d", maxEvents)
	}
	tail := q.Has("tail")
	if tail && q.Has("after") {
		return badRequest("tail and after do not go together: tail gives the latest events, after pages forward")
	}
	keep := visibleTo(principal(ctx))
	if q.Get("watch") != "" {
		return s.watchEvents(w, r, after, keep) // watch.go
	}
	var out wire.Events
	if tail {
		out, err = s.tailEvents(ctx, int(limit), keep)
	} else {
		out, err = s.eventsAfter(ctx, after, int(limit), keep)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// visibleTo says which events p may see: operators all, a tenant's roles
// those about the tenant that nobody of another tenant caused.
func visibleTo(p auth.Principal) func(wire.Event) bool {
	return func(e wire.Event) bool {
		return p.Role == auth.Operator ||
			e.Tenant == p.Tenant && (e.ActorTenant == "" || e.ActorTenant == p.Tenant)
	}
}

// eventsAfter pages forward from seq after, reading at most maxScan
// entries; Next is where the following page starts.
func (s *Server) eventsAfter(ctx context.Context, after int64, limit int, keep func(wire.Event) bool) (wire.Events, error) {
	out := wire.Events{Events: []wire.Event{}, Next: after}
	for scanned := 0; scanned < maxScan && len(out.Events) < limit; {
		page, err := s.audit.Entries(ctx, uint64(out.Next), min(maxEvents, maxScan-scanned))
		if err != nil {
			return out, err
		}
		if len(page) == 0 {
			break
		}
		scanned += len(page)
		for _, a := range page {
			out.Next = int64(a.Seq)
			if ev := event(a); keep(ev) {
				out.Events = append(out.Events, ev)
				if len(out.Events) == limit {
					return out, nil
				}
			}
		}
	}
	return out, nil
}

// tailEvents returns the latest limit events that keep accepts, oldest
// first, looking back at most maxScan entries; Next is the newest seq.
func (s *Server) tailEvents(ctx context.Context, limit int, keep func(wire.Event) bool) (wire.Events, error) {
	out := wire.Events{Events: []wire.Event{}}
	head, err := s.auditHead(ctx)
	if err != nil {
		return out, err
	}
	out.Next = int64(head)
	var found [][]wire.Event // newest chunk first
	n := 0
	for end := head; end > 0 && head-end < maxScan && n < limit; {
		start := end - min(end, maxEvents) // entries start+1..end
		page, err := s.audit.Entries(ctx, start, int(end-start))
		if err != nil {
			return out, err
		}
		var chunk []wire.Event
		for _, a := range page {
			if ev := event(a); keep(ev) {
				chunk = append(chunk, ev)
			}
		}
		if extra := n + len(chunk) - limit; extra > 0 {
			chunk = chunk[extra:]
		}
		n += len(chunk)
		found = append(found, chunk)
		end = start
	}
	for _, chunk := range slices.Backward(found) {
		out.Events = append(out.Events, chunk...)
	}
	return out, nil
}

// auditHead is the seq of the newest audit entry (0 for none), from the
// head key the audit package documents.
func (s *Server) auditHead(ctx context.Context) (uint64, error) {
	v, err := s.store.Get(ctx, audit.HeadKey)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var h audit.Head
	if err := json.Unmarshal(v.Data, &h); err != nil {
		return 0, fmt.Errorf("audit head: %w", err)
	}
	return h.Seq, nil
}

func queryInt(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, strconv.ErrSyntax
	}
	return n, nil
}
