package server

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// TestFollowCoalesces: under a steady stream of changes the loop plans at
// most once per gap (planGap times a plan's time), not after every
// change, and the last change is still planned within maxPlanGap and one
// plan. The clock is synctest's: the figures are exact, not timings.
func TestFollowCoalesces(t *testing.T) {
	const (
		planTakes = 20 * time.Millisecond
		changeGap = time.Millisecond
		burst     = 2 * time.Second
	)
	synctest.Test(t, func(t *testing.T) {
		var plans []time.Time
		p := &planner{log: slog.New(slog.DiscardHandler)}
		p.replan = func(context.Context) error {
			time.Sleep(planTakes)
			plans = append(plans, time.Now())
			return nil
		}
		ctx, cancel := context.WithCancel(t.Context())
		changed := make(chan struct{}, 1)
		done := make(chan error, 1)
		go func() { done <- p.follow(ctx, changed, nil) }()
		synctest.Wait()
		start := time.Now()
		var last time.Time
		for time.Since(start) < burst {
			select {
			case changed <- struct{}{}:
			default:
			}
			last = time.Now()
			time.Sleep(changeGap)
		}
		time.Sleep(maxPlanGap + 2*planTakes + debounce)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// One plan at the start, then at most one per gap and plan.
		most := 2 + int(burst/(planGap*planTakes+planTakes))
		if n := len(plans) - 1; n > most || n < 2 {
			t.Errorf("%d plans during a %v burst of changes, want 2 to %d (one per %v gap and %v plan)", n, burst, most, planGap*planTakes, planTakes)
		}
		if end := plans[len(plans)-1]; !end.After(last) || end.Sub(last) > maxPlanGap+planTakes {
			t.Errorf("last plan %v after the last change, want within %v", end.Sub(last), maxPlanGap+planTakes)
		}
	})
}
