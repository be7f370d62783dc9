package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/memdrain/memdrain/drain"
)

// The pm2 part runs the same leaky Node app under `memdrain run` and under
// PM2's cluster mode with max_memory_restart, in PM2's best setup (a
// memory check every second, PM2_WORKER_INTERVAL=1000, and an app that
// closes its server on SIGINT), with the same load and limit. It also
// measures the cost of memdrain's proxy: the app alone on its port against
// the app behind memdrain with no limit. PM2 is installed by npm ci from
// pm2/package-lock.json into pm2/node_modules (git-ignored); the part is
// skipped, saying why, when node or npm is missing or the install fails.
// pm2_run.go runs one side.

// pm2Part is the part's result.
type pm2Part struct {
	Part    string      `json:"part"`
	Config  nodeLoad    `json:"config"`
	Skipped string      `json:"skipped,omitempty"`
	Sides   []*nodeSide `json:"sides,omitempty"`
	// Ratios are PM2's figure over memdrain's.
	Ratios map[string]float64 `json:"pm2_over_memdrain,omitempty"`
}

// The sides, in the order they run.
const (
	sideMemdrain = "memdrain"
	sidePM2      = "pm2"
	sideAlone    = "app alone"
	sideProxied  = "behind memdrain, no limit"
)

func runPM2Part(ctx context.Context, cfg nodeLoad, tmp string, prog *progress) (*pm2Part, error) {
	part := &pm2Part{Part: "pm2", Config: cfg}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			part.Skipped = tool + " not found in PATH; install Node.js with npm to compare with PM2"
			return part, nil
		}
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go tool is needed to build memdrain: %w", err)
	}
	root, err := moduleRoot(ctx, goTool)
	if err != nil {
		return nil, err
	}
	prog.note("pm2: installing PM2 with npm ci")
	pm2Dir := filepath.Join(root, "bench", "pm2")
	if out, err := npmCI(ctx, pm2Dir); err != nil {
		part.Skipped = fmt.Sprintf("npm ci in %s failed (%v): %s", pm2Dir, err, lastLines(out, 3))
		return part, nil
	}
	prog.note("pm2: building memdrain")
	bin := filepath.Join(tmp, "memdrain")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/memdrain/memdrain/cmd/memdrain")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building memdrain: %w\n%s", err, out)
	}
	app := filepath.Join(tmp, "app.js")
	if err := os.WriteFile(app, []byte(leakyNodeApp), 0o644); err != nil {
		return nil, err
	}
	env := nodeEnv{memdrain: bin, pm2Runtime: filepath.Join(pm2Dir, "node_modules", ".bin", "pm2-runtime"), app: app, dir: tmp}
	for _, side := range []string{sideMemdrain, sidePM2, sideAlone, sideProxied} {
		r, err := runNodeSide(ctx, side, env, cfg, prog)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", side, err)
		}
		part.Sides = append(part.Sides, r)
	}
	m, p := part.Sides[0], part.Sides[1]
	part.Ratios = map[string]float64{}
	add := func(name string, mv, pv float64) {
		if mv != 0 {
			part.Ratios[name] = pv / mv
		}
	}
	add("max_rss", float64(m.MaxRSSBytes), float64(p.MaxRSSBytes))
	add("throughput_steady_rps", m.ThroughputSteadyRPS, p.ThroughputSteadyRPS)
	add("throughput_min_rps", m.ThroughputMinRPS, p.ThroughputMinRPS)
	add("p99_ms", m.P99Ms, p.P99Ms)
	add("max_ms", m.MaxMs, p.MaxMs)
	return part, nil
}

// npmCI installs pm2/package-lock.json, unless it is installed already.
func npmCI(ctx context.Context, dir string) ([]byte, error) {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "pm2-runtime")); err == nil {
		return nil, nil
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

func (p *pm2Part) print(w io.Writer) {
	c := p.Config
	fmt.Fprintf(w, "\n7. Any language, against PM2: a Node app, %d workers, limit %s, %d clients (%d keep-alive, %d new connection each request), %d ms requests leaking %d KiB, %.0f s a side\n",
		c.Workers, drain.FormatSize(c.Limit), c.Clients, c.Clients-c.Clients/2, c.Clients/2, c.WorkMillis, c.LeakKiB, c.Duration.Seconds())
	if p.Skipped != "" {
		fmt.Fprintf(w, "skipped: %s\n", p.Skipped)
		return
	}
	t := &table{}
	header := []string{""}
	for _, s := range p.Sides {
		header = append(header, s.Side)
	}
	t.row(header...)
	row := func(name string, cell func(*nodeSide) string) {
		cells := []string{name}
		for _, s := range p.Sides {
			cells = append(cells, cell(s))
		}
		t.row(cells...)
	}
	row("requests", func(s *nodeSide) string { return fmt.Sprint(s.Requests) })
	row("failed", func(s *nodeSide) string { return fmt.Sprint(s.Failed) })
	row("retried (silently, by Go's transport)", func(s *nodeSide) string { return fmt.Sprint(s.Retried) })
	row("recycles", func(s *nodeSide) string { return fmt.Sprint(s.Recycles) })
	row("highest worker RSS", func(s *nodeSide) string {
		if s.Side == sideAlone || s.Side == sideProxied {
			return drain.FormatSize(s.MaxRSSBytes)
		}
		return fmt.Sprintf("%s (%.2f× the limit)", drain.FormatSize(s.MaxRSSBytes), float64(s.MaxRSSBytes)/float64(c.Limit))
	})
	row("throughput, steady (median second)", func(s *nodeSide) string { return fmt.Sprintf("%.0f/s", s.ThroughputSteadyRPS) })
	row("throughput, lowest second", func(s *nodeSide) string { return fmt.Sprintf("%.0f/s", s.ThroughputMinRPS) })
	row("latency p50 / p99 / max", func(s *nodeSide) string {
		return fmt.Sprintf("%.1f / %.1f / %.0f ms", s.P50Ms, s.P99Ms, s.MaxMs)
	})
	row("supervisor CPU a request", func(s *nodeSide) string {
		if s.Side == sideAlone {
			return "-"
		}
		return fmt.Sprintf("%.1f µs", s.SupervisorCPUPerRequestUs)
	})
	row("supervisor RSS at the end", func(s *nodeSide) string {
		if s.Side == sideAlone {
			return "-"
		}
		return drain.FormatSize(s.SupervisorRSSBytes)
	})
	t.write(w)
	fmt.Fprintln(w, "(the last two columns: the same app and load with no memory limit and no leak-driven recycle, alone on its port and behind memdrain's proxy)")
}

var errNoWorkers = errors.New("workers did not start")

// check returns what fails the run: memdrain losing a request.
func (p *pm2Part) check() []error {
	if p.Skipped != "" || len(p.Sides) == 0 {
		return nil
	}
	var errs []error
	for _, s := range p.Sides {
		if s.Side != sidePM2 && (s.Failed > 0 || s.Requests == 0) {
			errs = append(errs, fmt.Errorf("pm2 part, %s: %d of %d requests failed: %v", s.Side, s.Failed, s.Requests, s.Failures))
		}
	}
	return errs
}
