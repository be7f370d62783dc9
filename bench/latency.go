package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/memdrain/memdrain/drain"
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
			d, err := drainOnce(lengths, memdrain)
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

// drainOnce serves one request per entry of lengths on 127.0.0.1, starts
// the drain once all have arrived, and returns the time from the last
// handler's return to the drain's return.
func drainOnce(lengths []time.Duration, memdrain bool) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	var last time.Time
	var arrived sync.WaitGroup
	arrived.Add(len(lengths))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d) // the request's work
		w.Write([]byte("ok"))
		mu.Lock()
		last = time.Now()
		mu.Unlock()
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	c, err := drain.New(drain.Config{Timeout: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		ln.Close()
		return 0, err
	}
	returned := make(chan time.Time, 1)
	if memdrain {
		go func() {
			drain.Serve(srv, c, ln)
			returned <- time.Now()
		}()
	} else {
		go srv.Serve(ln)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	var clients sync.WaitGroup
	failed := make(chan error, len(lengths))
	for _, d := range lengths {
		clients.Add(1)
		go func() {
			defer clients.Done()
			resp, err := client.Get("http://" + ln.Addr().String() + "/?d=" + d.String())
			if err != nil {
				failed <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	arrived.Wait()
	if memdrain {
		c.Start(drain.Manual)
	} else {
		srv.Shutdown(context.Background())
		returned <- time.Now()
	}
	end := <-returned
	clients.Wait()
	close(failed)
	if err := <-failed; err != nil {
		return 0, fmt.Errorf("a request failed during the drain: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return end.Sub(last), nil
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
