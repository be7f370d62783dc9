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
	return driveHalves(loadCtx, url, clients, &requests, &failed)
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
	c := d.count()
	f := loadFigures{Seconds: d.end.Sub(d.start).Seconds(), Requests: c.Requests, Failed: c.Failed, Failures: c.Failures,
		Retried: c.Retried, Groups: c.Groups}
	l := summarize(c.latencies)
	f.P50Ms, f.P99Ms, f.MaxMs = l.P50Ms, l.P99Ms, l.MaxMs
	f.ThroughputSteadyRPS, f.ThroughputLowestRPS = steadyAndLowest(buckets(c.ends, d.start, bucketWidth, int(d.end.Sub(d.start)/bucketWidth)))
	return f
}

// loadCounts is a load's requests, failures and resends, by group and in
// all, and each request's latency and end, in one order.
type loadCounts struct {
	Requests, Failed, Retried int
	Failures                  map[string]int
	Groups                    map[string]groupResult
	latencies                 []time.Duration
	ends                      []time.Time
}

// count counts every group's outcomes.
func (d driven) count() loadCounts {
	c := loadCounts{Failures: map[string]int{}, Groups: map[string]groupResult{}}
	for g, outcomes := range d.outcomes {
		gr := groupResult{Failures: map[string]int{}}
		lat := make([]time.Duration, 0, len(outcomes))
		for _, o := range outcomes {
			gr.Requests++
			if o.Failure != "" {
				gr.Failed++
				gr.Failures[o.Failure]++
				c.Failures[o.Failure]++
			}
			if o.Retried {
				gr.Retried++
			}
			lat = append(lat, o.End.Sub(o.Start))
			c.ends = append(c.ends, o.End)
		}
		gr.Latency = summarize(lat)
		c.Groups[groupNames[g]] = gr
		c.Requests, c.Failed, c.Retried = c.Requests+gr.Requests, c.Failed+gr.Failed, c.Retried+gr.Retried
		c.latencies = append(c.latencies, lat...)
	}
	return c
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
// group (keepAlive, newConn), with the load's window. requests and failed
// count as they go, for the progress line.
func driveHalves(ctx context.Context, url string, clients int, requests, failed *atomic.Int64) driven {
	d := driven{start: time.Now()}
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
					d.outcomes[g] = append(d.outcomes[g], o)
					mu.Unlock()
				},
			})
		}()
	}
	wg.Wait()
	d.end = time.Now()
	return d
}
