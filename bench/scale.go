package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/memory"
)

// Part 5: the cost of supervision. The subject's master with 1 to 64 idle
// workers under a memory limit (so every worker is sampled): its CPU time
// per check interval, measured over a while once every worker is ready,
// and its RSS.

// scaleConfig is part 5's configuration.
type scaleConfig struct {
	Workers       []int         `json:"workers"`
	Measure       time.Duration `json:"measure_ns"`
	Limit         uint64        `json:"limit_bytes"`
	CheckInterval time.Duration `json:"check_interval_ns"`
}

// scalePart is part 5's result.
type scalePart struct {
	Part   string        `json:"part"`
	Config scaleConfig   `json:"config"`
	Rows   []scaleFigure `json:"rows"`
}

// scaleFigure is the master's cost with one worker count.
type scaleFigure struct {
	Workers int `json:"workers"`
	// CPUPerIntervalUs is the master's CPU time per check interval, in
	// microseconds; PerWorkerUs divides it by the workers.
	CPUPerIntervalUs float64 `json:"cpu_per_interval_us"`
	PerWorkerUs      float64 `json:"cpu_per_interval_per_worker_us"`
	CPUPercent       float64 `json:"cpu_percent_of_a_core"`
	RSSBytes         uint64  `json:"master_rss_bytes"`
	ReadySeconds     float64 `json:"all_ready_after_seconds"`
}

func runScalePart(ctx context.Context, cfg scaleConfig, tmp string, prog *progress) (*scalePart, error) {
	prog.note("cost of supervision: building the subject")
	bin, err := buildSubject(ctx, tmp)
	if err != nil {
		return nil, err
	}
	p := &scalePart{Part: "scale", Config: cfg}
	for _, n := range cfg.Workers {
		row, err := measureScale(ctx, bin, n, cfg, prog)
		if err != nil {
			return nil, fmt.Errorf("%d workers: %w", n, err)
		}
		p.Rows = append(p.Rows, row)
	}
	return p, nil
}

// measureScale starts the subject with n idle workers, waits until all
// are ready and a moment more, and measures the master over cfg.Measure.
func measureScale(ctx context.Context, bin string, n int, cfg scaleConfig, prog *progress) (scaleFigure, error) {
	addr, err := freePort()
	if err != nil {
		return scaleFigure{}, err
	}
	ready := make(chan struct{}, 4096)
	handle := func(e eventlog.Event) {
		if !e.Is(cluster.Ready) {
			return
		}
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	// No status lines: printing them would be part of what is measured.
	proc, err := startSubject(bin, subjectSpec{addr: addr, workers: n, limit: cfg.Limit, checkInterval: cfg.CheckInterval}, handle)
	if err != nil {
		return scaleFigure{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			proc.stop(30 * time.Second)
		}
	}()
	started := time.Now()
	if err := waitReady(ctx, proc, ready, n, 60*time.Second+time.Duration(n)*time.Second); err != nil {
		return scaleFigure{}, err
	}
	row := scaleFigure{Workers: n, ReadySeconds: time.Since(started).Seconds()}
	// Let the start settle: the first samples of every worker, the
	// stragglers' stats.
	settle := 2 * cfg.CheckInterval
	progCtx, stopProg := context.WithCancel(ctx)
	defer stopProg()
	go prog.run(progCtx, fmt.Sprintf("cost of supervision, %d workers", n), settle+cfg.Measure, nil)
	if err := sleep(ctx, settle); err != nil {
		return row, err
	}
	cpu0, err := cpuTime(proc.pid)
	if err != nil {
		return row, err
	}
	t0 := time.Now()
	if err := sleep(ctx, cfg.Measure); err != nil {
		return row, err
	}
	cpu1, err := cpuTime(proc.pid)
	if err != nil {
		return row, err
	}
	elapsed := time.Since(t0)
	stopProg()
	if err := proc.running(); err != nil {
		return row, err
	}
	row.RSSBytes, _ = rss(proc.pid)
	intervals := float64(elapsed) / float64(cfg.CheckInterval)
	used := cpu1 - cpu0
	row.CPUPerIntervalUs = float64(used.Microseconds()) / intervals
	row.PerWorkerUs = row.CPUPerIntervalUs / float64(n)
	row.CPUPercent = 100 * float64(used) / float64(elapsed)
	stopped = true
	return row, proc.stop(30 * time.Second)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (p *scalePart) print(w io.Writer) {
	c := p.Config
	fmt.Fprintf(w, "\n5. Cost of supervision: the master with idle workers under a %s limit, sampled every %v, measured over %v\n",
		memory.FormatSize(c.Limit), c.CheckInterval, c.Measure)
	t := &table{}
	t.row("workers", "master CPU per interval", "per worker", "of a core", "master RSS", "all ready after")
	for _, r := range p.Rows {
		t.row(fmt.Sprint(r.Workers), fmt.Sprintf("%.0f µs", r.CPUPerIntervalUs), fmt.Sprintf("%.1f µs", r.PerWorkerUs),
			fmt.Sprintf("%.3f%%", r.CPUPercent), memory.FormatSize(r.RSSBytes), fmt.Sprintf("%.1f s", r.ReadySeconds))
	}
	t.write(w)
}
