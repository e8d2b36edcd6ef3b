package server

import "context"

// FlushDenials writes the summary of refused requests now, as the
// background loop of Run does every Limits.AuditInterval.
func (s *Server) FlushDenials(ctx context.Context) error { return s.flushDenials(ctx) }
