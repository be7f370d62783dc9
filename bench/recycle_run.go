package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
)

// The recycling part runs the subject as a cluster of leaking workers and
// drives it with closed-loop load from this process: memdrain's fork-first
// recycling, then the baseline's replacement after exit, on the same
// workload. This file runs one of them and records everything raw;
// recycle_analysis.go turns the record into figures.

// loadConfig is one recycling run's workload.
type loadConfig struct {
	Baseline      bool          `json:"-"`
	Workers       int           `json:"workers"`
	Clients       int           `json:"clients"`
	Limit         uint64        `json:"limit_bytes"`
	Duration      time.Duration `json:"-"`
	WorkMillis    int           `json:"request_ms"`
	LeakKiB       int           `json:"leak_kib"`
	CheckInterval time.Duration `json:"-"`
}

func (c loadConfig) mode() string {
	if c.Baseline {
		return "baseline"
	}
	return "memdrain"
}

// The two groups of clients, reported separately.
const (
	keepAlive = iota // reuse connections
	newConn          // a new connection per request
)

var groupNames = [...]string{keepAlive: "keep_alive", newConn: "new_connection"}

// rssSample is one reading of a worker's resident memory.
type rssSample struct {
	T    time.Time
	Slot int
	Pid  int
	RSS  uint64
}

// record is everything one run observed.
type record struct {
	cfg        loadConfig
	driven     // the load: its window and every outcome
	events     []eventlog.Event
	samples    []rssSample
	peaks      map[int]workerPeak // by pid
	masterCPU  time.Duration      // over the load's window
	masterRSS  uint64             // at the end of the load
	masterPeak uint64             // VmHWM at the end of the load
}

// workerPeak is the highest resident memory a worker process reached.
type workerPeak struct {
	Slot  int    `json:"worker"`
	Pid   int    `json:"pid"`
	Bytes uint64 `json:"bytes"`
}

// sampleEvery is how often the harness reads every worker's RSS.
const sampleEvery = 50 * time.Millisecond

// runRecycle starts the subject in cfg's mode, waits until its workers
// serve, drives the load for cfg.Duration, stops the subject, and returns
// what it saw.
func runRecycle(ctx context.Context, bin string, cfg loadConfig, prog *progress) (*record, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	rec := &record{cfg: cfg, peaks: map[int]workerPeak{}}
	var mu sync.Mutex
	live := map[int]int{} // pid -> slot
	ready := make(chan struct{}, 1024)
	handle := func(e eventlog.Event) {
		mu.Lock()
		defer mu.Unlock()
		rec.events = append(rec.events, e)
		switch {
		case e.Is(cluster.Started) && e.Pid != 0:
			live[e.Pid] = e.Worker
		case e.IsExit():
			delete(live, e.Pid)
		case e.Is(cluster.Ready):
			select {
			case ready <- struct{}{}:
			default:
			}
		}
	}
	spec := subjectSpec{addr: addr, workers: cfg.Workers, limit: cfg.Limit, checkInterval: cfg.CheckInterval, args: []string{"-status-every", "1s"}}
	if cfg.Baseline {
		spec.args = append(spec.args, "-baseline")
	}
	proc, err := startSubject(bin, spec, handle)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			proc.stop(10 * time.Second)
		}
	}()
	if err := waitReady(ctx, proc, ready, cfg.Workers, 30*time.Second); err != nil {
		return nil, err
	}
	if err := waitServing(ctx, "http://"+addr+"/health", 10*time.Second); err != nil {
		return nil, err
	}

	// Sample the workers' memory, and the master's CPU, over the load.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		sampleWorkers(sampleCtx, &mu, live, rec)
	}()
	cpu0, err := cpuTime(proc.pid)
	if err != nil {
		stopSampling()
		return nil, fmt.Errorf("reading the master's CPU time: %w", err)
	}

	var requests, failed atomic.Int64
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	progCtx, stopProg := context.WithCancel(ctx)
	go prog.run(progCtx, "recycling under load, "+cfg.mode(), cfg.Duration, func() string {
		mu.Lock()
		recycles := 0
		for _, e := range rec.events {
			if e.IsRecycle() {
				recycles++
			}
		}
		mu.Unlock()
		return fmt.Sprintf("%d requests, %d failed, %d recycles", requests.Load(), failed.Load(), recycles)
	})
	url := fmt.Sprintf("http://%s/work?ms=%d&leak=%d", addr, cfg.WorkMillis, cfg.LeakKiB)
	rec.driven = driveHalves(loadCtx, url, cfg.Clients, &requests, &failed)
	stopProg()
	cpu1, cpuErr := cpuTime(proc.pid)
	rec.masterCPU = cpu1 - cpu0
	rec.masterRSS, _ = rss(proc.pid)
	rec.masterPeak, _ = peakRSS(proc.pid)
	stopSampling()
	sampling.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := proc.running(); err != nil {
		return nil, err
	}
	if cpuErr != nil {
		return nil, fmt.Errorf("reading the master's CPU time: %w", cpuErr)
	}
	stopped = true
	if err := proc.stop(40 * time.Second); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	return rec, nil
}

// waitReady waits until n workers reported ready.
func waitReady(ctx context.Context, proc *subjectProc, ready <-chan struct{}, n int, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for got := 0; got < n; got++ {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-proc.exited:
			return proc.running()
		case <-deadline.C:
			return fmt.Errorf("only %d of %d workers were ready after %v", got, n, timeout)
		}
	}
	return nil
}

// waitServing waits until url answers.
func waitServing(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v: %w", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sampleWorkers reads the RSS and peak RSS of every live worker each
// sampleEvery until ctx ends.
func sampleWorkers(ctx context.Context, mu *sync.Mutex, live map[int]int, rec *record) {
	ticker := time.NewTicker(sampleEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		mu.Lock()
		pids := make(map[int]int, len(live))
		for pid, slot := range live {
			pids[pid] = slot
		}
		mu.Unlock()
		now := time.Now()
		for pid, slot := range pids {
			bytes, err := rss(pid)
			if err != nil {
				continue // it exited since
			}
			peak, err := peakRSS(pid)
			mu.Lock()
			rec.samples = append(rec.samples, rssSample{T: now, Slot: slot, Pid: pid, RSS: bytes})
			if err == nil && peak > rec.peaks[pid].Bytes {
				rec.peaks[pid] = workerPeak{Slot: slot, Pid: pid, Bytes: peak}
			}
			mu.Unlock()
		}
	}
}
