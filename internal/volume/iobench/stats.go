package iobench

import (
	"fmt"
	"slices"
)

// Figures are a result's four numbers in job order: sequential write and
// read (MB/s), random write and read (IOPS).
func (r Result) Figures() [4]float64 {
	return [4]float64{r.SeqWriteMBps, r.SeqReadMBps, r.RandWriteOps, r.RandReadOps}
}

// Jobs names the figures, in Figures' order.
var Jobs = [4]string{"seq write", "seq read", "rand write", "rand read"}

// Summary is one figure over several rounds: its median, quartiles and
// range. On a shared machine the best of a few runs says more about luck
// than about the volume; the median, with the middle half of the rounds
// (Q1–Q3) beside it, says how much to trust it.
type Summary struct {
	Median float64 `json:"median"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize is the median, quartiles (linear interpolation between the
// closest ranks) and range of xs; zero for none.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Sorted(slices.Values(xs))
	return Summary{Median: quantile(s, 0.5), Q1: quantile(s, 0.25), Q3: quantile(s, 0.75), Min: s[0], Max: s[len(s)-1]}
}

// quantile of sorted s at q in [0, 1].
func quantile(s []float64, q float64) float64 {
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

// Spread is the range as a share of the median, e.g. 0.3 for ±15 %.
func (s Summary) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / s.Median
}

func (s Summary) String() string {
	return fmt.Sprintf("%.2f [%.2f–%.2f]", s.Median, s.Q1, s.Q3)
}

// Round is one interleaved round: the host and a replica on the same
// file system, one right after the other (HostFirst says in which order;
// rounds alternate, so a load that rises or falls through the run
// favours neither side).
type Round struct {
	Host      Result `json:"host"`
	Replica   Result `json:"replica"`
	HostFirst bool   `json:"hostFirst"`
}

// Ratios are the replica ÷ host figures of one round: the two ran back
// to back, under about the same load, so their ratio varies far less
// between rounds than either figure does.
func (r Round) Ratios() [4]float64 {
	var out [4]float64
	h, p := r.Host.Figures(), r.Replica.Figures()
	for i := range out {
		if h[i] > 0 {
			out[i] = p[i] / h[i]
		}
	}
	return out
}

// Compare summarizes rounds: each side's figures, and the round-by-round
// ratios.
func Compare(rounds []Round) (host, replica, ratio [4]Summary) {
	for i := range 4 {
		var h, p, q []float64
		for _, r := range rounds {
			h = append(h, r.Host.Figures()[i])
			p = append(p, r.Replica.Figures()[i])
			q = append(q, r.Ratios()[i])
		}
		host[i], replica[i], ratio[i] = Summarize(h), Summarize(p), Summarize(q)
	}
	return host, replica, ratio
}

// Verdict says whether ratio meets goal: "met" when three rounds in four
// do (Q1), "met on the median" when only the median does, "not met"
// otherwise.
func Verdict(ratio Summary, goal float64) string {
	switch {
	case ratio.Q1 >= goal:
		return "met"
	case ratio.Median >= goal:
		return "met on the median"
	}
	return "not met"
}
