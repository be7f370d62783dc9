package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/memdrain/memdrain/memory"
)

// partNames are the parts, in the order they run.
var partNames = []string{"latency", "middleware", "recycle", "stress", "scale", "pm2"}

// options is the harness's configuration, from its flags.
type options struct {
	parts     []string
	json      bool
	smoke     bool
	out       string
	baseline  bool
	latency   latencyConfig
	benchTime time.Duration
	load      loadConfig
	scale     scaleConfig
	stress    stressConfig
	pm2       pm2Config
}

// parseFlags parses the command line. A bad value is an error naming the
// flag and what it accepts. -smoke changes the defaults of the flags not
// given to a run of a few seconds a part.
func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; -h prints the usage below
	var (
		o            options
		parts        = fs.String("part", "all", "parts to run: all, or a comma-separated list of "+strings.Join(partNames, ", "))
		limit        = fs.String("limit", "150Mi", "recycle: each worker's memory limit (150Mi, 1Gi)")
		scaleWorkers = fs.String("scale-workers", "1,8,32,64", "scale: the worker counts to measure, comma-separated")
		pm2Limit     = fs.String("pm2-limit", "150Mi", "pm2: each worker's memory limit, under memdrain and PM2 alike")
		stressOnly   = fs.String("scenarios", "all", "stress: scenarios to run: all, or a comma-separated list of "+strings.Join(scenarioKeys(), ", "))
	)
	fs.BoolVar(&o.json, "json", false, "print one JSON object per part instead of tables")
	fs.BoolVar(&o.smoke, "smoke", false, "a few seconds a part; fail if the harness breaks or memdrain loses a request")
	fs.StringVar(&o.out, "out", "", "directory to write each part's JSON and the plots into (bench/results holds the checked-in run)")
	fs.BoolVar(&o.baseline, "baseline", true, "recycle: also run the baseline (Shutdown over the limit, respawn after exit)")
	fs.IntVar(&o.latency.Rounds, "drains", 10, "latency: drains of each kind")
	fs.IntVar(&o.latency.Requests, "drain-requests", 50, "latency: requests in flight in each drain")
	fs.DurationVar(&o.latency.Longest, "longest", 2*time.Second, "latency: requests last from 0 to this")
	fs.DurationVar(&o.benchTime, "benchtime", time.Second, "middleware: time spent on each benchmark")
	fs.DurationVar(&o.load.Duration, "duration", 60*time.Second, "recycle: load duration of each of memdrain and the baseline")
	fs.IntVar(&o.load.Clients, "clients", 32, "recycle and pm2: closed-loop clients; half keep connections alive, half open one per request")
	fs.IntVar(&o.load.Workers, "workers", 2, "recycle and pm2: worker processes")
	fs.IntVar(&o.load.WorkMillis, "ms", 20, "recycle and pm2: milliseconds each request works")
	fs.IntVar(&o.load.LeakKiB, "leak", 24, "recycle and pm2: KiB each request leaks")
	fs.DurationVar(&o.pm2.Duration, "pm2-duration", 60*time.Second, "pm2: load duration under each of memdrain and PM2")
	fs.DurationVar(&o.pm2.CostDuration, "pm2-cost-duration", 15*time.Second, "pm2: load duration of each of the app alone and the app behind memdrain")
	fs.DurationVar(&o.load.CheckInterval, "check-interval", time.Second, "recycle and scale: longest time between two memory samples of a worker")
	fs.DurationVar(&o.stress.Duration, "stress-duration", 10*time.Second, "stress: how long the load of each recycling scenario lasts")
	fs.BoolVar(&o.stress.Short, "stress-short", false, "stress: the smoke run's smaller scenarios (2,000 clients become 200; -smoke sets it)")
	fs.DurationVar(&o.scale.Measure, "scale-measure", 10*time.Second, "scale: how long to measure the master's CPU for each worker count")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run . [flags]   (in bench/)\n\n")
		fs.SetOutput(os.Stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.Usage()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; every setting is a flag (go run . -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.smoke {
		smokeDefaults(&o, set, limit, pm2Limit, scaleWorkers)
	}

	var err error
	if o.parts, err = parseParts(*parts); err != nil {
		return nil, err
	}
	if o.load.Limit, err = memory.ParseMemoryLimit(*limit); err != nil {
		return nil, fmt.Errorf("-limit: %w", err)
	}
	if o.load.Limit == 0 {
		return nil, fmt.Errorf("-limit is %q; accepted: a memory size such as 150Mi (the workers must be recycled)", *limit)
	}
	if o.pm2.Limit, err = memory.ParseMemoryLimit(*pm2Limit); err != nil {
		return nil, fmt.Errorf("-pm2-limit: %w", err)
	}
	if o.pm2.Limit < 1<<20 {
		return nil, fmt.Errorf("-pm2-limit is %q; accepted: a memory size of at least 1Mi such as 150Mi (the workers must be recycled)", *pm2Limit)
	}
	o.pm2.Workers, o.pm2.Clients, o.pm2.WorkMillis, o.pm2.LeakKiB = o.load.Workers, o.load.Clients, o.load.WorkMillis, o.load.LeakKiB
	o.pm2.WithPM2 = !o.smoke
	if o.stress.Scenarios, err = parseScenarios(*stressOnly); err != nil {
		return nil, err
	}
	if o.scale.Workers, err = parseCounts(*scaleWorkers); err != nil {
		return nil, fmt.Errorf("-scale-workers: %w", err)
	}
	o.scale.Limit, o.scale.CheckInterval = o.load.Limit, o.load.CheckInterval
	for _, c := range []struct {
		name   string
		v, lo  int
		hi     int
		accept string
	}{
		{"drains", o.latency.Rounds, 1, 10000, ""},
		{"drain-requests", o.latency.Requests, 1, 1000, ""},
		{"clients", o.load.Clients, 2, 4096, " (half keep connections alive, half do not)"},
		{"workers", o.load.Workers, 1, 1024, ""},
		{"ms", o.load.WorkMillis, 0, 60000, ""},
		{"leak", o.load.LeakKiB, 0, 1 << 20, ""},
	} {
		if c.v < c.lo || c.v > c.hi {
			return nil, fmt.Errorf("-%s is %d; accepted: a whole number from %d to %d%s", c.name, c.v, c.lo, c.hi, c.accept)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		lo   time.Duration
	}{
		{"longest", o.latency.Longest, time.Millisecond},
		{"benchtime", o.benchTime, time.Millisecond},
		{"duration", o.load.Duration, time.Second},
		{"check-interval", o.load.CheckInterval, memory.MinCheckInterval},
		{"scale-measure", o.scale.Measure, time.Second},
		{"stress-duration", o.stress.Duration, time.Second},
		{"pm2-duration", o.pm2.Duration, 2 * time.Second},
		{"pm2-cost-duration", o.pm2.CostDuration, 2 * time.Second},
	} {
		if d.v < d.lo {
			return nil, fmt.Errorf("-%s is %v; accepted: a duration of at least %v", d.name, d.v, d.lo)
		}
	}
	return &o, nil
}

// smokeDefaults shrinks every part to a few seconds, for the flags that
// were not given. The limit is lower so that workers recycle within
// seconds.
func smokeDefaults(o *options, set map[string]bool, limit, pm2Limit, scaleWorkers *string) {
	if !set["drains"] {
		o.latency.Rounds = 3
	}
	if !set["drain-requests"] {
		o.latency.Requests = 20
	}
	if !set["longest"] {
		o.latency.Longest = 300 * time.Millisecond
	}
	if !set["benchtime"] {
		o.benchTime = 50 * time.Millisecond
	}
	if !set["duration"] {
		o.load.Duration = 8 * time.Second
	}
	if !set["clients"] {
		o.load.Clients = 16
	}
	if !set["limit"] {
		*limit = "48Mi"
	}
	if !set["scale-workers"] {
		*scaleWorkers = "1,4"
	}
	if !set["scale-measure"] {
		o.scale.Measure = 2 * time.Second
	}
	if !set["stress-short"] {
		o.stress.Short = true
	}
	if !set["stress-duration"] {
		o.stress.Duration = 3 * time.Second
	}
	// A Node worker starts at about 45 MiB: 72Mi is reached within a
	// few seconds.
	if !set["pm2-limit"] {
		*pm2Limit = "72Mi"
	}
	if !set["pm2-duration"] {
		o.pm2.Duration = 8 * time.Second
	}
	if !set["pm2-cost-duration"] {
		o.pm2.CostDuration = 2 * time.Second
	}
}

// parseScenarios parses -scenarios.
func parseScenarios(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return scenarioKeys(), nil
	}
	var keys []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(scenarioKeys(), k) {
			return nil, fmt.Errorf("-scenarios %q: unknown scenario %q; accepted: all, or a comma-separated list of %s", s, k, strings.Join(scenarioKeys(), ", "))
		}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return slices.Index(scenarioKeys(), a) - slices.Index(scenarioKeys(), b) })
	return keys, nil
}

// parseParts parses -part.
func parseParts(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return partNames, nil
	}
	var parts []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(partNames, p) {
			return nil, fmt.Errorf("-part %q: unknown part %q; accepted: all, or a comma-separated list of %s", s, p, strings.Join(partNames, ", "))
		}
		if !slices.Contains(parts, p) {
			parts = append(parts, p)
		}
	}
	// Run them in the usual order whatever order they were given in.
	slices.SortFunc(parts, func(a, b string) int { return slices.Index(partNames, a) - slices.Index(partNames, b) })
	return parts, nil
}

// parseCounts parses a comma-separated list of worker counts.
func parseCounts(s string) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("%q: %q is not a count; accepted: whole numbers from 1 to 1024, comma-separated", s, f)
		}
		counts = append(counts, n)
	}
	return counts, nil
}
