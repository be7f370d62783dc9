package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/memdrain/memdrain/memory"
)

// The pm2 part: the same leaky Node app (node/app.js) under memdrain run
// and under PM2 in cluster mode with max_memory_restart, one after the
// other with the same load and limit; then the proxy's own cost, the app
// alone against the app behind memdrain.

// pm2Config is the pm2 part's workload.
type pm2Config struct {
	Workers      int           `json:"workers"`
	Clients      int           `json:"clients"`
	Limit        uint64        `json:"limit_bytes"`
	WorkMillis   int           `json:"request_ms"`
	LeakKiB      int           `json:"leak_kib"`
	Duration     time.Duration `json:"-"`
	CostDuration time.Duration `json:"-"`
	// The durations in seconds, for the JSON.
	Seconds     float64 `json:"seconds"`
	CostSeconds float64 `json:"cost_seconds"`
	// WithPM2 is false in the smoke run, which runs memdrain only and
	// needs neither npm nor PM2.
	WithPM2 bool `json:"with_pm2"`
}

// pm2Part is the part's result.
type pm2Part struct {
	Part   string    `json:"part"`
	Config pm2Config `json:"config"`
	// Skipped says why the part did not run (node missing; for a run with
	// PM2, npm missing or npm ci failed).
	Skipped     string      `json:"skipped,omitempty"`
	NodeVersion string      `json:"node_version,omitempty"`
	PM2Version  string      `json:"pm2_version,omitempty"`
	Memdrain    *sideResult `json:"memdrain,omitempty"`
	PM2         *sideResult `json:"pm2,omitempty"`
	Cost        *proxyCost  `json:"proxy_cost,omitempty"`
	Ratios      *pm2Ratios  `json:"pm2_over_memdrain,omitempty"`
}

// sideResult is one supervisor's run of the leaky app under load.
type sideResult struct {
	Supervisor string `json:"supervisor"`
	loadFigures
	// Recycles counts the memory recycles decided during the load: for
	// memdrain its "replacing worker" log lines with reason memory, for
	// PM2 its Worker's "exceeds --max-memory-restart" lines.
	Recycles int `json:"recycles"`
	// MaxRSSBytes is the highest memory any worker reached: its process
	// tree's RSS summed at a sample (every 50 ms), or one process's
	// VmHWM if that was higher.
	MaxRSSBytes uint64  `json:"max_rss_bytes"`
	LimitBytes  uint64  `json:"limit_bytes"`
	MaxRSSRatio float64 `json:"max_rss_over_limit"`
	// The supervisor's own processes (memdrain: the master and its
	// shims; PM2: its daemon, the cluster master): CPU time over the
	// load, and RSS.
	SupervisorCPUSeconds      float64 `json:"supervisor_cpu_seconds"`
	SupervisorCPUPerRequestUs float64 `json:"supervisor_cpu_per_request_us"`
	SupervisorRSSBytes        uint64  `json:"supervisor_rss_bytes"`
	SupervisorPeakRSSBytes    uint64  `json:"supervisor_peak_rss_bytes"`
	// The same memory as PSS, which counts a page shared by n processes
	// 1/n in each: memdrain's master and shims run one binary, whose
	// pages a sum of RSS counts in every one of them.
	SupervisorPSSBytes     uint64 `json:"supervisor_pss_bytes"`
	SupervisorPeakPSSBytes uint64 `json:"supervisor_peak_pss_bytes"`
	StoppedAtGuard         bool   `json:"stopped_at_guard,omitempty"`
}

// proxyCost is the app alone against the same app behind memdrain: one
// worker, no limit, no leak.
type proxyCost struct {
	Alone   loadFigures `json:"alone"`
	Proxied loadFigures `json:"behind_memdrain"`
	// Added latency: behind memdrain minus alone.
	AddedP50Ms float64 `json:"added_p50_ms"`
	AddedP99Ms float64 `json:"added_p99_ms"`
	// memdrain's master and shim: CPU time over the load, per request
	// and as a share of one core; RSS at the end and the highest sampled.
	CPUSeconds       float64 `json:"memdrain_cpu_seconds"`
	CPUPerRequestUs  float64 `json:"memdrain_cpu_per_request_us"`
	CPUPercentOfCore float64 `json:"memdrain_cpu_percent_of_a_core"`
	RSSBytes         uint64  `json:"memdrain_rss_bytes"`
	PeakRSSBytes     uint64  `json:"memdrain_peak_rss_bytes"`
	PSSBytes         uint64  `json:"memdrain_pss_bytes"`
	PeakPSSBytes     uint64  `json:"memdrain_peak_pss_bytes"`
}

// pm2Ratios divides PM2's figures by memdrain's.
type pm2Ratios struct {
	Retried          float64 `json:"retried,omitempty"`
	MaxRSS           float64 `json:"max_rss"`
	ThroughputSteady float64 `json:"throughput_steady"`
	ThroughputLowest float64 `json:"throughput_lowest"`
	P99              float64 `json:"p99"`
}

// runPM2Part runs the part. A missing node (or, with PM2, npm or a
// failed npm ci) skips it: the result says why.
func runPM2Part(ctx context.Context, cfg pm2Config, tmp string, prog *progress) (*pm2Part, error) {
	cfg.Seconds, cfg.CostSeconds = cfg.Duration.Seconds(), cfg.CostDuration.Seconds()
	part := &pm2Part{Part: "pm2", Config: cfg}
	node, skip, err := findNode(ctx)
	if err != nil {
		return nil, err
	}
	if skip != "" {
		part.Skipped = skip
		return part, nil
	}
	part.NodeVersion = node.version
	if cfg.WithPM2 {
		if part.PM2Version, part.Skipped = node.installPM2(ctx, prog); part.Skipped != "" {
			return part, nil
		}
	}
	prog.note("pm2: building cmd/memdrain")
	// The command is a module of its own, beside the harness's.
	bin, err := buildPackage(ctx, tmp, "../cmd/memdrain", "github.com/memdrain/memdrain/cmd/memdrain", "memdrain")
	if err != nil {
		return nil, err
	}

	leaky := appEnv(cfg, true)
	prog.note("pm2: the leaky app under memdrain run")
	m, err := startMemdrain(ctx, bin, node, cfg.Workers, cfg.Limit, leaky)
	if err != nil {
		return nil, err
	}
	part.Memdrain, err = measureSide(ctx, "memdrain", m, cfg, prog, m.stopMemdrain)
	if err != nil {
		return nil, fmt.Errorf("memdrain: %w", err)
	}

	if cfg.WithPM2 {
		prog.note("pm2: the leaky app under PM2 %s, cluster mode", part.PM2Version)
		dir, err := os.MkdirTemp(tmp, "pm2-*")
		if err != nil {
			return nil, err
		}
		p, err := startPM2(ctx, node, dir, cfg.Workers, cfg.Limit, leaky)
		if err != nil {
			return nil, err
		}
		part.PM2, err = measureSide(ctx, "PM2", p, cfg, prog, p.stopPM2)
		if err != nil {
			return nil, fmt.Errorf("PM2: %w", err)
		}
		part.Ratios = ratiosPM2(part.Memdrain, part.PM2)
	}

	if part.Cost, err = measureCost(ctx, bin, node, cfg, prog); err != nil {
		return nil, err
	}
	return part, nil
}

// measureSide drives the load at a started subject and stops it.
func measureSide(ctx context.Context, name string, s *subject, cfg pm2Config, prog *progress, stop func() error) (r *sideResult, err error) {
	defer func() {
		if stopErr := stop(); err == nil && stopErr != nil {
			r, err = nil, stopErr
		}
	}()
	s.watch.begin()
	d := drive(ctx, s.url, cfg.Clients, cfg.Duration, s.watch.guard, prog, "pm2: "+name)
	f, err := s.watch.figures()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.running(); err != nil {
		return nil, err
	}
	r = &sideResult{
		Supervisor: name, loadFigures: d.figures(), Recycles: s.recyclesBetween(d.start, d.end),
		MaxRSSBytes: f.WorkerPeak, LimitBytes: cfg.Limit, MaxRSSRatio: float64(f.WorkerPeak) / float64(cfg.Limit),
		SupervisorCPUSeconds: f.OwnCPU.Seconds(), SupervisorRSSBytes: f.OwnRSS, SupervisorPeakRSSBytes: f.OwnPeak,
		SupervisorPSSBytes: f.OwnPSS, SupervisorPeakPSSBytes: f.OwnPeakPSS,
		StoppedAtGuard: f.Guarded,
	}
	if r.Requests > 0 {
		r.SupervisorCPUPerRequestUs = float64(f.OwnCPU.Microseconds()) / float64(r.Requests)
	}
	return r, nil
}

// costWarmup is the load each side of the cost comparison gets before
// it is measured, so that neither is measured while V8 still compiles
// the app.
const costWarmup = 2 * time.Second

// measureCost runs the app alone, then behind memdrain with one worker
// and no limit, neither leaking, under the same load.
func measureCost(ctx context.Context, bin string, node *nodeEnv, cfg pm2Config, prog *progress) (*proxyCost, error) {
	plain := appEnv(cfg, false)
	prog.note("pm2: the proxy's cost: the app alone")
	a, err := startAlone(ctx, node, plain)
	if err != nil {
		return nil, err
	}
	drive(ctx, a.url, cfg.Clients, costWarmup, nil, prog, "pm2: warming up the app alone")
	alone := drive(ctx, a.url, cfg.Clients, cfg.CostDuration, nil, prog, "pm2: the app alone")
	if err := errors.Join(a.running(), a.stopAlone()); err != nil {
		return nil, err
	}
	prog.note("pm2: the proxy's cost: the app behind memdrain")
	m, err := startMemdrain(ctx, bin, node, 1, 0, plain)
	if err != nil {
		return nil, err
	}
	drive(ctx, m.url, cfg.Clients, costWarmup, nil, prog, "pm2: warming up the app behind memdrain")
	m.watch.begin()
	proxied := drive(ctx, m.url, cfg.Clients, cfg.CostDuration, nil, prog, "pm2: the app behind memdrain")
	f, err := m.watch.figures()
	err = errors.Join(err, m.running(), ctx.Err(), m.stopMemdrain())
	if err != nil {
		return nil, err
	}
	c := &proxyCost{Alone: alone.figures(), Proxied: proxied.figures(), CPUSeconds: f.OwnCPU.Seconds(), RSSBytes: f.OwnRSS, PeakRSSBytes: f.OwnPeak, PSSBytes: f.OwnPSS, PeakPSSBytes: f.OwnPeakPSS}
	c.AddedP50Ms = c.Proxied.P50Ms - c.Alone.P50Ms
	c.AddedP99Ms = c.Proxied.P99Ms - c.Alone.P99Ms
	if c.Proxied.Requests > 0 {
		c.CPUPerRequestUs = float64(f.OwnCPU.Microseconds()) / float64(c.Proxied.Requests)
	}
	if c.Proxied.Seconds > 0 {
		c.CPUPercentOfCore = 100 * c.CPUSeconds / c.Proxied.Seconds
	}
	return c, nil
}

// ratiosPM2 divides PM2's figures by memdrain's, where memdrain's is not
// zero.
func ratiosPM2(m, p *sideResult) *pm2Ratios {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return &pm2Ratios{
		Retried:          div(float64(p.Retried), float64(m.Retried)),
		MaxRSS:           div(float64(p.MaxRSSBytes), float64(m.MaxRSSBytes)),
		ThroughputSteady: div(p.ThroughputSteadyRPS, m.ThroughputSteadyRPS),
		ThroughputLowest: div(p.ThroughputLowestRPS, m.ThroughputLowestRPS),
		P99:              div(p.P99Ms, m.P99Ms),
	}
}

// problems returns what fails the run: memdrain losing or resending a
// request, or no request at all.
func (p *pm2Part) problems() []error {
	m := p.Memdrain
	if m == nil {
		return nil
	}
	var errs []error
	if m.Failed > 0 || m.Retried > 0 {
		errs = append(errs, fmt.Errorf("pm2 part: memdrain run failed %d and retried %d of %d requests: %s", m.Failed, m.Retried, m.Requests, failures(m.Failed, m.Failures)))
	}
	if m.Requests == 0 {
		errs = append(errs, errors.New("pm2 part: no request completed under memdrain run"))
	}
	return errs
}

// print writes the part's tables.
func (p *pm2Part) print(w io.Writer) {
	c := p.Config
	fmt.Fprintf(w, "\n7. memdrain run and PM2 side by side: the same Node app (%s), %d workers, limit %s, %d clients (%d keep-alive, %d new connection each request), %d ms requests leaking %d KiB, %.0f s each\n",
		filepath.Join("node", "app.js"), c.Workers, memory.FormatSize(c.Limit), c.Clients, c.Clients-c.Clients/2, c.Clients/2, c.WorkMillis, c.LeakKiB, c.Duration.Seconds())
	if p.Skipped != "" {
		fmt.Fprintf(w, "skipped: %s\n", p.Skipped)
		return
	}
	sides := []*sideResult{p.Memdrain}
	header := []string{"", "memdrain run"}
	if p.PM2 != nil {
		sides = append(sides, p.PM2)
		header = append(header, fmt.Sprintf("PM2 %s cluster mode, max_memory_restart, 1 s checks", p.PM2Version))
	}
	t := &table{}
	t.row(header...)
	each := func(name string, f func(r *sideResult) string) {
		row := []string{name}
		for _, r := range sides {
			row = append(row, f(r))
		}
		t.row(row...)
	}
	each("requests", func(r *sideResult) string { return fmt.Sprint(r.Requests) })
	each("failed", func(r *sideResult) string { return failures(r.Failed, r.Failures) })
	each("retried by Go's transport", func(r *sideResult) string { return fmt.Sprint(r.Retried) })
	for _, g := range groupNames {
		each("  "+g+" clients: failed / retried", func(r *sideResult) string {
			gr := r.Groups[g]
			return fmt.Sprintf("%s / %d of %d", failures(gr.Failed, gr.Failures), gr.Retried, gr.Requests)
		})
	}
	each("recycles (memory)", func(r *sideResult) string { return fmt.Sprint(r.Recycles) })
	each("highest worker RSS", func(r *sideResult) string {
		s := fmt.Sprintf("%s (%.2f× the limit)", memory.FormatSize(r.MaxRSSBytes), r.MaxRSSRatio)
		if r.StoppedAtGuard {
			s += fmt.Sprintf(", load stopped at %d×", guardRatio)
		}
		return s
	})
	each("throughput steady (median 100 ms)", func(r *sideResult) string { return fmt.Sprintf("%.0f/s", r.ThroughputSteadyRPS) })
	each("  lowest 100 ms", func(r *sideResult) string {
		return fmt.Sprintf("%.0f/s (%.0f%%)", r.ThroughputLowestRPS, pct(r.ThroughputLowestRPS, r.ThroughputSteadyRPS))
	})
	each("latency p50 / p99 / max", func(r *sideResult) string {
		return fmt.Sprintf("%.1f / %.1f / %.1f ms", r.P50Ms, r.P99Ms, r.MaxMs)
	})
	each("supervisor CPU (per request)", func(r *sideResult) string {
		return fmt.Sprintf("%.2f s (%.0f µs)", r.SupervisorCPUSeconds, r.SupervisorCPUPerRequestUs)
	})
	each("supervisor RSS (peak)", func(r *sideResult) string {
		return fmt.Sprintf("%s (%s)", memory.FormatSize(r.SupervisorRSSBytes), memory.FormatSize(r.SupervisorPeakRSSBytes))
	})
	each("supervisor PSS (peak)", func(r *sideResult) string {
		return fmt.Sprintf("%s (%s)", memory.FormatSize(r.SupervisorPSSBytes), memory.FormatSize(r.SupervisorPeakPSSBytes))
	})
	t.write(w)
	if !c.WithPM2 {
		fmt.Fprintln(w, "PM2: not run (the smoke run runs memdrain only)")
	}

	if k := p.Cost; k != nil {
		fmt.Fprintf(w, "\nThe proxy's cost: the app alone on its port against the app behind memdrain run (1 worker, no limit), neither leaking, %d clients, %.0f s each\n",
			c.Clients, c.CostDuration.Seconds())
		t := &table{}
		t.row("", "app alone", "behind memdrain", "added")
		t.row("requests (failed, retried)", fmt.Sprintf("%d (%d, %d)", k.Alone.Requests, k.Alone.Failed, k.Alone.Retried),
			fmt.Sprintf("%d (%d, %d)", k.Proxied.Requests, k.Proxied.Failed, k.Proxied.Retried), "")
		t.row("latency p50", fmt.Sprintf("%.2f ms", k.Alone.P50Ms), fmt.Sprintf("%.2f ms", k.Proxied.P50Ms), fmt.Sprintf("%+.2f ms", k.AddedP50Ms))
		t.row("latency p99", fmt.Sprintf("%.2f ms", k.Alone.P99Ms), fmt.Sprintf("%.2f ms", k.Proxied.P99Ms), fmt.Sprintf("%+.2f ms", k.AddedP99Ms))
		t.row("throughput steady", fmt.Sprintf("%.0f/s", k.Alone.ThroughputSteadyRPS), fmt.Sprintf("%.0f/s", k.Proxied.ThroughputSteadyRPS), "")
		t.write(w)
		fmt.Fprintf(w, "memdrain's own (master + shim): CPU %.2f s, %.0f µs a request, %.1f%% of a core; RSS %s (peak %s), PSS %s (peak %s)\n",
			k.CPUSeconds, k.CPUPerRequestUs, k.CPUPercentOfCore, memory.FormatSize(k.RSSBytes), memory.FormatSize(k.PeakRSSBytes),
			memory.FormatSize(k.PSSBytes), memory.FormatSize(k.PeakPSSBytes))
	}
}
