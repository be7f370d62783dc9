package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/memdrain/memdrain/internal/drainlatency"
)

// Part 1: drain latency. For a set of requests of random length, the time
// from the completion of the last request to the return of the drain:
// memdrain's drain.Serve against http.Server.Shutdown, on the same request
// set in every round (the logic of drain/latency_bench_test.go).

// latencyConfig is part 1's workload.
type latencyConfig struct {
	Rounds   int           `json:"rounds"`
	Requests int           `json:"requests_per_drain"`
	Longest  time.Duration `json:"longest_ns"`
}

// latencyPart is part 1's result.
type latencyPart struct {
	Part     string        `json:"part"`
	Config   latencyConfig `json:"config"`
	Memdrain latencies     `json:"memdrain"`
	Shutdown latencies     `json:"shutdown"`
	// RatioP50 is Shutdown's p50 over memdrain's.
	RatioP50 float64 `json:"ratio_p50"`
	RatioMax float64 `json:"ratio_max"`
}

func runLatencyPart(ctx context.Context, cfg latencyConfig, prog *progress) (*latencyPart, error) {
	progCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := 0
	var mu sync.Mutex
	go prog.run(progCtx, "drain latency", time.Duration(cfg.Rounds)*2*cfg.Longest, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d of %d rounds", done, cfg.Rounds)
	})
	rng := rand.New(rand.NewPCG(1, 2))
	var ours, theirs []time.Duration
	for range cfg.Rounds {
		lengths := make([]time.Duration, cfg.Requests)
		for i := range lengths {
			lengths[i] = time.Duration(rng.Int64N(int64(cfg.Longest)))
		}
		for _, memdrain := range []bool{true, false} {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			d, err := drainlatency.Once(lengths, memdrain)
			if err != nil {
				return nil, err
			}
			if memdrain {
				ours = append(ours, d)
			} else {
				theirs = append(theirs, d)
			}
		}
		mu.Lock()
		done++
		mu.Unlock()
	}
	p := &latencyPart{Part: "latency", Config: cfg, Memdrain: summarize(ours), Shutdown: summarize(theirs)}
	if p.Memdrain.P50Ms > 0 {
		p.RatioP50 = p.Shutdown.P50Ms / p.Memdrain.P50Ms
	}
	if p.Memdrain.MaxMs > 0 {
		p.RatioMax = p.Shutdown.MaxMs / p.Memdrain.MaxMs
	}
	return p, nil
}

func (p *latencyPart) print(w io.Writer) {
	c := p.Config
	fmt.Fprintf(w, "\n1. Drain latency: from the last request's end to the drain's return; %d drains of %d requests of random length 0–%v\n", c.Rounds, c.Requests, c.Longest)
	t := &table{}
	t.row("", "p50", "p99", "max")
	row := func(name string, l latencies) {
		t.row(name, fmt.Sprintf("%.2f ms", l.P50Ms), fmt.Sprintf("%.2f ms", l.P99Ms), fmt.Sprintf("%.2f ms", l.MaxMs))
	}
	row("memdrain drain.Serve", p.Memdrain)
	row("http.Server.Shutdown", p.Shutdown)
	t.row("ratio", fmt.Sprintf("%.0f×", p.RatioP50), "", fmt.Sprintf("%.0f×", p.RatioMax))
	t.write(w)
}
