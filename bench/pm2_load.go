package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memdrain/memdrain/internal/loadgen"
)

// The pm2 part's load: closed-loop clients, half on kept-alive
// connections and half on a new connection each request, as in the
// recycle part, and the figures computed from every request's outcome.

// driven is one load's record.
type driven struct {
	start, end time.Time
	outcomes   [2][]loadgen.Outcome // by group: keepAlive, newConn
}

// drive sends GETs to url from clients closed-loop clients for d, or until
// ctx ends or stop closes (a worker past the guard).
func drive(ctx context.Context, url string, clients int, d time.Duration, stop <-chan struct{}, prog *progress, what string) driven {
	loadCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-loadCtx.Done():
		}
	}()
	var requests, failed atomic.Int64
	progCtx, stopProg := context.WithCancel(ctx)
	defer stopProg()
	go prog.run(progCtx, what, d, func() string {
		return fmt.Sprintf("%d requests, %d failed", requests.Load(), failed.Load())
	})
	var rec driven
	rec.start = time.Now()
	rec.outcomes = driveHalves(loadCtx, url, clients, &requests, &failed)
	rec.end = time.Now()
	return rec
}

// loadFigures is what a load saw from the clients' side.
type loadFigures struct {
	Seconds  float64                `json:"seconds"`
	Requests int                    `json:"requests"`
	Failed   int                    `json:"failed"`
	Failures map[string]int         `json:"failures"`
	Retried  int                    `json:"retried"`
	Groups   map[string]groupResult `json:"groups"`
	P50Ms    float64                `json:"p50_ms"`
	P99Ms    float64                `json:"p99_ms"`
	MaxMs    float64                `json:"max_ms"`
	// ThroughputSteadyRPS is the median 100 ms bucket after the first
	// second, ThroughputLowestRPS the lowest one.
	ThroughputSteadyRPS float64 `json:"throughput_steady_rps"`
	ThroughputLowestRPS float64 `json:"throughput_lowest_rps"`
}

// figures computes a load's figures.
func (d driven) figures() loadFigures {
	f := loadFigures{Seconds: d.end.Sub(d.start).Seconds(), Failures: map[string]int{}, Groups: map[string]groupResult{}}
	var all []time.Duration
	var ends []time.Time
	for g, outcomes := range d.outcomes {
		gr, lat := tallyGroup(outcomes, f.Failures)
		f.Groups[groupNames[g]] = gr
		f.Requests, f.Failed, f.Retried = f.Requests+gr.Requests, f.Failed+gr.Failed, f.Retried+gr.Retried
		all = append(all, lat...)
		for _, o := range outcomes {
			ends = append(ends, o.End)
		}
	}
	l := summarize(all)
	f.P50Ms, f.P99Ms, f.MaxMs = l.P50Ms, l.P99Ms, l.MaxMs
	f.ThroughputSteadyRPS, f.ThroughputLowestRPS = steadyAndLowest(buckets(ends, d.start, bucketWidth, int(d.end.Sub(d.start)/bucketWidth)))
	return f
}

// tallyGroup counts one group's requests, failures (also added to
// failures, the total by kind) and resends, and returns its latencies.
func tallyGroup(outcomes []loadgen.Outcome, failures map[string]int) (groupResult, []time.Duration) {
	gr := groupResult{Failures: map[string]int{}}
	lat := make([]time.Duration, 0, len(outcomes))
	for _, o := range outcomes {
		gr.Requests++
		if o.Failure != "" {
			gr.Failed++
			gr.Failures[o.Failure]++
			failures[o.Failure]++
		}
		if o.Retried {
			gr.Retried++
		}
		lat = append(lat, o.End.Sub(o.Start))
	}
	gr.Latency = summarize(lat)
	return gr, lat
}

// steadyAndLowest returns the median and the lowest of the 100 ms
// buckets after the warm-up, in requests per second.
func steadyAndLowest(counts []int) (steady, lowest float64) {
	counts = counts[min(int(warmup/bucketWidth), len(counts)):]
	if len(counts) == 0 {
		return 0, 0
	}
	low := counts[0]
	for _, c := range counts {
		low = min(low, c)
	}
	perSecond := float64(time.Second / bucketWidth)
	return float64(median(counts)) * perSecond, float64(low) * perSecond
}

// driveHalves runs clients closed-loop clients against url until ctx ends,
// half of them (the odd one out included) on kept-alive connections and
// half on a new connection each request, and returns every outcome by
// group (keepAlive, newConn). requests and failed count as they go, for
// the progress line.
func driveHalves(ctx context.Context, url string, clients int, requests, failed *atomic.Int64) [2][]loadgen.Outcome {
	var outcomes [2][]loadgen.Outcome
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range groupNames {
		n := clients / 2
		if g == keepAlive {
			n = clients - n
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			loadgen.Run(ctx, loadgen.Config{
				URL: url, Clients: n, KeepAlive: g == keepAlive,
				OnResponse: func(o loadgen.Outcome) {
					requests.Add(1)
					if o.Failure != "" {
						failed.Add(1)
					}
					mu.Lock()
					outcomes[g] = append(outcomes[g], o)
					mu.Unlock()
				},
			})
		}()
	}
	wg.Wait()
	return outcomes
}
