package app

import (
	"os"
	"runtime/debug"
)

// upGCPercent is the garbage collector's GOGC while a control plane runs
// (Go's default is 100). Under a stream of applies the collector took a
// tenth of the CPU and its pauses showed in the latency tail; the control
// plane's live heap is small (tens of MiB), so letting it grow four times
// before collecting costs little memory. An operator's GOGC or GOMEMLIMIT
// in the environment wins.
const upGCPercent = 400

// tuneGC sets upGCPercent unless the environment sets the collector, and
// returns the function that restores the previous setting.
func tuneGC() (restore func()) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	old := debug.SetGCPercent(upGCPercent)
	return func() { debug.SetGCPercent(old) }
}
