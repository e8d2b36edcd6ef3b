package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// initLeader sets up who schedules. Without an elector this server leads
// from the start (one process on the embedded store), so that the plan is
// made and stored on demand even before Run. With one, it serves the stored
// plan until Run wins a term.
func (s *Server) initLeader(el leader.Elector) error {
	if el == nil {
		host, _ := os.Hostname()
		solo := leader.Solo{ID: host}
		term, _ := solo.Campaign(context.Background())
		s.elector = solo
		s.planner.lead(term)
		s.leading.Store(true)
	} else {
		s.elector = el
	}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rung_leader",
		Help: "1 while this control plane leads (schedules and writes the plan), 0 while it serves the leader's plan.",
	}, func() float64 {
		if s.leading.Load() {
			return 1
		}
		return 0
	})
	if err := s.reg.Register(g); err != nil {
		return fmt.Errorf("server: metrics: %w", err)
	}
	return nil
}

// lead campaigns and plans while this server leads, until ctx is done. A
// lost term (the store lease expired: a pause, a partition) stops planning
// at once and campaigns again; the fence on every plan write makes sure a
// deposed leader that hasn't noticed yet writes nothing.
func (s *Server) lead(ctx context.Context) error {
	for ctx.Err() == nil {
		term, err := s.elector.Campaign(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, store.ErrClosed) {
				return nil
			}
			s.log.Warn("leader: campaign failed; trying again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		s.log.Info("leader: leading", "id", term.ID, "term", term.Term)
		// A new leader starts every registered node's clock now, as a
		// restart does: it re-places nothing before a node had a whole
		// timeout to reach it. (A server that led from the start, on the
		// embedded store, has its nodes' heartbeats already.)
		if !s.leading.Load() {
			if err := s.loadNodes(ctx); err != nil {
				s.log.Warn("leader: load nodes", "err", err)
			}
		}
		s.planner.lead(term)
		s.leading.Store(true)
		tctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-term.Done():
				cancel()
			case <-tctx.Done():
			}
		}()
		err = s.planner.run(tctx)
		cancel()
		s.leading.Store(false)
		s.planner.lead(nil)
		if ctx.Err() != nil || err != nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if rerr := term.Resign(rctx); rerr != nil {
				s.log.Warn("leader: resign", "err", rerr)
			}
			rcancel()
			return err
		}
		s.log.Warn("leader: term ended; serving the stored plan and campaigning again", "term", term.Term)
	}
	return nil
}

// getLeader answers who leads (GET /v1/leader; operators).
func (s *Server) getLeader(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r.Context(), auth.List, auth.Object{Kind: auth.KindNode}, ""); err != nil {
		return err
	}
	info, err := s.elector.Leader(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.Leader{ID: info.ID, Term: info.Term, Answering: s.leading.Load()})
	return nil
}

// lease is how long a node may run its replicas after sending a heartbeat
// the control plane answered: 3/4 of the node timeout, so the node stops
// them (fencing) before the control plane, which counts the timeout from
// when the heartbeat arrived, re-places them.
func (n *nodes) lease() time.Duration { return n.timeout * 3 / 4 }

// grantsLeases refuses heartbeats on a control plane that does not lead:
// only the leader decides when a silent node's replicas move, so only it
// may grant the lease that fences them. An agent sent to a follower
// holds no lease and stops its replicas when its last one ends.
func (s *Server) grantsLeases() error {
	if s.leading.Load() {
		return nil
	}
	e := newError(http.StatusServiceUnavailable, wire.CodeUnavailable, "this control plane does not lead; send heartbeats to the leader (rung leader names it)")
	e.RetryAfter = time.Second
	return e
}
