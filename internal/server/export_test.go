package server

import "context"

// FlushDenials writes the summary of refused requests now, as the
// background loop of Run does every Limits.AuditInterval.
func (s *Server) FlushDenials(ctx context.Context) error { return s.flushDenials(ctx) }

// DropListSnapshots forgets every list snapshot, as their time limit or
// the memory bound would.
func (s *Server) DropListSnapshots() {
	if s.snaps != nil {
		s.snaps.dropAll()
	}
}

// Pipelined is how many batches of applies were prepared while the batch
// before them committed.
func (s *Server) Pipelined() int64 { return s.pipelined.Load() }
