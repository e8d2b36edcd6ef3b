package server

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"rung.dev/rung/internal/server/wire"
)

// Lists and writers share the CPU. A list of a large directory costs as
// much as many applies, and a crowd of listers would otherwise take most
// of the machine from the writers (issue 13: 20 listers cut applies to a
// fifth). So lists are served a few at a time (listGate), each read from
// one store snapshot and written into memory first, so that a slow reader
// holds no slot; and a list page copies the stored objects as they are
// instead of decoding and re-encoding them.

// listSlots is how many lists are served at once: half the CPUs, at least
// one. The others wait in line (their requests' contexts bound the wait).
func listSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// listYield is how much longer than a list took its slot stays closed
// after it while writes are in flight: lists then take at most
// 1/(listYield+1) of a slot's time, and writes the rest. With no write
// waiting, lists run back to back.
const listYield = 3

// listGate bounds the lists served at once, and spaces them out while
// writes are in flight (writing counts them).
type listGate struct {
	slots   chan struct{}
	writing *atomic.Int64
	// after runs f after d (time.AfterFunc; tests record d instead).
	after func(d time.Duration, f func())
}

func newListGate(slots int, writing *atomic.Int64) listGate {
	return listGate{slots: make(chan struct{}, slots), writing: writing,
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// enter waits for a slot; the caller must call the returned release once
// its list is made (before writing it: a slow reader holds no slot). It
// fails with ctx's error when the request ends first.
func (g listGate) enter(ctx context.Context) (release func(), err error) {
	r, err := g.enterCharged(ctx)
	if err != nil {
		return nil, err
	}
	return func() { r(0) }, nil
}

// enterCharged is enter whose release names what the list cost beyond
// the time it held the slot: while writes are in flight the slot then
// stays closed listYield times the larger of the two.
func (g listGate) enterCharged(ctx context.Context) (release func(charge time.Duration), err error) {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	start := time.Now()
	return func(charge time.Duration) {
		if g.writing.Load() == 0 {
			<-g.slots
			return
		}
		g.after(listYield*max(time.Since(start), charge), func() { <-g.slots })
	}, nil
}

// listHoldMax is how long at most a list page being sent holds its slot:
// a client that reads slowly must not keep the other lists out.
const listHoldMax = 50 * time.Millisecond

// enterFor is enterCharged for a list whose charge is known beforehand;
// its slot is released after at most hold even if the caller has not
// released it by then (a slow reader), and release may be called either
// way.
func (g listGate) enterFor(ctx context.Context, hold, charge time.Duration) (release func(), err error) {
	r, err := g.enterCharged(ctx)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	free := func() { once.Do(func() { r(charge) }) }
	t := time.AfterFunc(hold, free)
	return func() { t.Stop(); free() }, nil
}

// encodeList is the JSON of a list page, as writeJSON would write it but
// with each item's object copied as stored: the store holds only JSON the
// server encoded itself, so there is nothing to check or re-indent.
func encodeList(l wire.List) []byte {
	n := 64
	for _, it := range l.Items {
		n += len(it.Object) + 40
	}
	b := make([]byte, 0, n)
	b = append(b, listHead...)
	for i, it := range l.Items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendItem(b, it.Revision, it.Object)
	}
	return appendListTail(b, len(l.Items) > 0, l.Revision, l.Continue)
}

// listHead opens a list page's JSON.
const listHead = "{\n  \"items\": ["

// appendItem appends one item of a list page (without the comma that
// separates it from the one before).
func appendItem(b []byte, rev int64, obj []byte) []byte {
	b = append(b, "\n    {\"revision\": "...)
	b = strconv.AppendInt(b, rev, 10)
	b = append(b, ", \"object\": "...)
	if len(obj) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, obj...)
	}
	return append(b, '}')
}

// appendListTail closes a list page's JSON after its items.
func appendListTail(b []byte, items bool, rev int64, cont string) []byte {
	if items {
		b = append(b, "\n  "...)
	}
	b = append(b, "],\n  \"revision\": "...)
	b = strconv.AppendInt(b, rev, 10)
	if cont != "" {
		c, _ := json.Marshal(cont)
		b = append(b, ",\n  \"continue\": "...)
		b = append(b, c...)
	}
	return append(b, "\n}\n"...)
}

// writeRaw writes a JSON body made beforehand, with writeJSON's headers.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	jsonHeaders(w)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client went away; nothing to do
}
