package drain_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/drainlatency"
)

// BenchmarkDrainLatency measures, for a set of requests of random length
// (0-2 s), the time from the completion of the last request to the return
// of the drain: memdrain's Serve against http.Server.Shutdown, on the same
// request set in every iteration. It reports percentiles over iterations
// and the ratio of Shutdown's to memdrain's. Run it with a fixed count:
//
//	go test -run '^$' -bench DrainLatency -benchtime 20x ./drain
func BenchmarkDrainLatency(b *testing.B) {
	const requests = 50
	const longest = 2 * time.Second
	var ours, theirs []time.Duration
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		lengths := make([]time.Duration, requests)
		for i := range lengths {
			lengths[i] = time.Duration(rng.Int64N(int64(longest)))
		}
		for _, memdrain := range []bool{true, false} {
			d, err := drainlatency.Once(lengths, memdrain)
			if err != nil {
				b.Fatal(err)
			}
			if memdrain {
				ours = append(ours, d)
			} else {
				theirs = append(theirs, d)
			}
		}
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(ms(percentile(d, 0.50)), name+"-p50-ms")
		b.ReportMetric(ms(percentile(d, 0.99)), name+"-p99-ms")
		b.ReportMetric(ms(d[len(d)-1]), name+"-max-ms")
	}
	report("memdrain", ours)
	report("shutdown", theirs)
	b.ReportMetric(float64(percentile(theirs, 0.5))/float64(max(percentile(ours, 0.5), 1)), "shutdown/memdrain-p50")
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(int(p*float64(len(sorted))), len(sorted)-1)]
}
