package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the p-quantile (0 ≤ p ≤ 1) of sorted by the
// nearest-rank method, or 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank-1, 0), len(sorted)-1)]
}

// latencies summarises a set of request or drain durations.
type latencies struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// summarize sorts d in place and returns its percentiles.
func summarize(d []time.Duration) latencies {
	slices.Sort(d)
	l := latencies{Count: len(d), P50Ms: ms(percentile(d, 0.50)), P99Ms: ms(percentile(d, 0.99))}
	if len(d) > 0 {
		l.MaxMs = ms(d[len(d)-1])
	}
	return l
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// buckets counts events into consecutive buckets of width starting at
// start: the event at t falls in bucket (t-start)/width. Events before
// start or at or after start+n*width are left out.
func buckets(times []time.Time, start time.Time, width time.Duration, n int) []int {
	counts := make([]int, max(n, 0))
	for _, t := range times {
		d := t.Sub(start)
		if d < 0 {
			continue
		}
		if i := int(d / width); i < n {
			counts[i]++
		}
	}
	return counts
}

// median returns the median of xs (the lower middle one for an even
// count), or 0 for none. xs is not modified.
func median(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// near reports whether t lies within window of any of the moments.
func near(t time.Time, moments []time.Time, window time.Duration) bool {
	for _, m := range moments {
		if d := t.Sub(m); d >= -window && d <= window {
			return true
		}
	}
	return false
}
