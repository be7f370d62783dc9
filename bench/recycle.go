package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/memdrain/memdrain/memory"
)

// recyclePart is part 3 (memdrain's recycling under load) with part 4
// (the baseline, same workload, same run) under "baseline". memdrain's
// figures are at the top level.
type recyclePart struct {
	Part   string     `json:"part"`
	Config loadConfig `json:"config"`
	recycleResult
	Baseline *recycleResult `json:"baseline,omitempty"`
	// Ratios are the baseline's figure over memdrain's.
	Ratios map[string]float64 `json:"baseline_over_memdrain,omitempty"`
}

// runRecyclePart builds the subject, runs memdrain's recycling and then
// (unless skipped) the baseline under the same load.
func runRecyclePart(ctx context.Context, cfg loadConfig, withBaseline bool, tmp string, prog *progress) (*recyclePart, error) {
	prog.note("recycling under load: building the subject")
	bin, err := buildSubject(ctx, tmp)
	if err != nil {
		return nil, err
	}
	part := &recyclePart{Part: "recycle", Config: cfg}
	rec, err := runRecycle(ctx, bin, cfg, prog)
	if err != nil {
		return nil, fmt.Errorf("memdrain: %w", err)
	}
	part.recycleResult = analyze(rec)
	if withBaseline {
		cfg.Baseline = true
		rec, err := runRecycle(ctx, bin, cfg, prog)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		b := analyze(rec)
		part.Baseline = &b
		part.Ratios = ratios(&part.recycleResult, &b)
	}
	return part, nil
}

// ratios divides the baseline's figures by memdrain's, where memdrain's
// is not zero.
func ratios(m, b *recycleResult) map[string]float64 {
	out := map[string]float64{}
	add := func(name string, mv, bv float64) {
		if mv != 0 {
			out[name] = bv / mv
		}
	}
	add("p99_ms", m.P99Ms, b.P99Ms)
	add("max_ms", m.MaxMs, b.MaxMs)
	add("p99_ms_around_recycles", m.AroundRecycles.P99Ms, b.AroundRecycles.P99Ms)
	add("throughput_steady_rps", m.ThroughputSteadyRPS, b.ThroughputSteadyRPS)
	add("throughput_min_rps", m.ThroughputMinRPS, b.ThroughputMinRPS)
	add("throughput_min_away_rps", m.ThroughputMinAwayRPS, b.ThroughputMinAwayRPS)
	add("max_rss_bytes", float64(m.MaxRSSBytes), float64(b.MaxRSSBytes))
	add("over_limit_to_replacement_ready_p50_ms", m.OverLimitToReadyMs.P50Ms, b.OverLimitToReadyMs.P50Ms)
	return out
}

// print writes the human table: memdrain and the baseline side by side.
func (p *recyclePart) print(w io.Writer) {
	c := p.Config
	fmt.Fprintf(w, "\n3. Recycling under load: %d workers, limit %s, %d clients (%d keep-alive, %d new connection each request), %d ms requests leaking %d KiB, %.0f s\n",
		c.Workers, memory.FormatSize(c.Limit), c.Clients, c.Clients-c.Clients/2, c.Clients/2, c.WorkMillis, c.LeakKiB, p.Seconds)
	cols := []*recycleResult{&p.recycleResult}
	header := []string{"", "memdrain"}
	if p.Baseline != nil {
		cols = append(cols, p.Baseline)
		header = append(header, "baseline (Shutdown, respawn after exit)")
	}
	t := &table{}
	t.row(header...)
	each := func(name string, f func(r *recycleResult) string) {
		row := []string{name}
		for _, r := range cols {
			row = append(row, f(r))
		}
		t.row(row...)
	}
	each("requests", func(r *recycleResult) string { return fmt.Sprint(r.Requests) })
	each("failed", func(r *recycleResult) string { return failures(r.Failed, r.Failures) })
	for _, g := range groupNames {
		each("  "+strings.ReplaceAll(g, "_", "-")+" clients: failed / retried", func(r *recycleResult) string {
			gr := r.Groups[g]
			return fmt.Sprintf("%s / %d of %d", failures(gr.Failed, gr.Failures), gr.Retried, gr.Requests)
		})
	}
	each("retried by Go's transport", func(r *recycleResult) string { return fmt.Sprint(r.Retried) })
	each("recycles (memory)", func(r *recycleResult) string { return fmt.Sprint(r.Recycles) })
	each("latency p50 / p99 / max", func(r *recycleResult) string {
		return fmt.Sprintf("%.1f / %.1f / %.1f ms", r.P50Ms, r.P99Ms, r.MaxMs)
	})
	each("  within 1 s of a recycle", func(r *recycleResult) string {
		a := r.AroundRecycles
		return fmt.Sprintf("%.1f / %.1f / %.1f ms", a.P50Ms, a.P99Ms, a.MaxMs)
	})
	each("throughput steady (median 100 ms)", func(r *recycleResult) string { return fmt.Sprintf("%.0f/s", r.ThroughputSteadyRPS) })
	each("  lowest within 1 s of a recycle", func(r *recycleResult) string {
		return fmt.Sprintf("%.0f/s (%.0f%%)", r.ThroughputMinRPS, pct(r.ThroughputMinRPS, r.ThroughputSteadyRPS))
	})
	each("  lowest farther from every recycle", func(r *recycleResult) string {
		return fmt.Sprintf("%.0f/s (%.0f%%)", r.ThroughputMinAwayRPS, pct(r.ThroughputMinAwayRPS, r.ThroughputSteadyRPS))
	})
	each("highest worker RSS", func(r *recycleResult) string {
		return fmt.Sprintf("%s (%.2f× the limit)", memory.FormatSize(r.MaxRSSBytes), r.MaxRSSRatio)
	})
	each("  per worker", func(r *recycleResult) string {
		var s []string
		for _, p := range r.WorkerMaxRSS {
			s = append(s, fmt.Sprintf("[%d] %.2f×", p.Slot, float64(p.Bytes)/float64(max(r.LimitBytes, 1))))
		}
		return strings.Join(s, " ")
	})
	each("over limit → replacement ready p50 / max", func(r *recycleResult) string {
		return fmt.Sprintf("%.1f / %.1f ms", r.OverLimitToReadyMs.P50Ms, r.OverLimitToReadyMs.MaxMs)
	})
	each("over limit → old worker exited p50 / max", func(r *recycleResult) string {
		return fmt.Sprintf("%.1f / %.1f ms", r.OverLimitToExitMs.P50Ms, r.OverLimitToExitMs.MaxMs)
	})
	each("master CPU", func(r *recycleResult) string {
		return fmt.Sprintf("%.2f s (%.2f%% of a core)", r.MasterCPUSeconds, r.MasterCPUPercent)
	})
	each("master RSS (peak)", func(r *recycleResult) string {
		return fmt.Sprintf("%s (%s)", memory.FormatSize(r.MasterRSSBytes), memory.FormatSize(r.MasterPeakRSSBytes))
	})
	t.write(w)
}

// failures formats a failure count with its kinds.
func failures(n int, kinds map[string]int) string {
	if n == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, kinds[k]))
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

// pct returns a as a percentage of b, or 0 if b is 0.
func pct(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * a / b
}
