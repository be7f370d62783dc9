package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/memdrain/memdrain/memory"
)

// The stress part runs the scenarios of issue 7 against the subject: a
// reload under 2,000 kept-alive clients, clients far away (late first
// byte, slow TLS handshake, latency on every write), HTTP/2, fast and
// standard leaks, a recycle while another worker drains slowly, a bad
// deploy, shutdown under load, and a hung worker. Each prints one row:
// requests, failed, retried by Go's transport, the highest RSS of any
// worker against the limit, and whether the scenario met its target.

// scenario is one row of the stress part.
type scenario struct {
	key  string // for -scenarios
	name string
	// gate: a failure of this scenario fails the run (the smoke run in
	// CI). Set only for scenarios that pass on the library as it is, so
	// that what works stays working while the rest is fixed.
	gate bool
	run  func(ctx context.Context, env *stressEnv) stressRow
}

// scenarios are the stress part's rows, in the order they run. The gated
// ones fail the run, the smoke run included, when they miss their target:
// every scenario of no lost request (HTTP/2 included, since the drain's
// two-step GOAWAY), and the standard leak's limit. The fast leak and the
// slow drain are not, for their highest RSS on a shared 2-core machine
// depends on its load.
var scenarios = []scenario{
	{key: "reload", gate: true, name: "reload (SIGHUP), keep-alive POST clients", run: reloadScenario},
	{key: "late-first-byte", gate: true, name: "late first byte (150 ms), recycles", run: lateFirstByteScenario},
	{key: "slow-handshake", gate: true, name: "slow TLS handshake (150 ms), recycles", run: slowHandshakeScenario},
	{key: "latency", gate: true, name: "keep-alive POSTs over 50 ms latency, recycles", run: latencyScenario},
	{key: "h2c", gate: true, name: "HTTP/2 h2c with pauses, recycles", run: h2cScenario},
	{key: "h2-tls", gate: true, name: "HTTP/2 over TLS with pauses, recycles", run: h2TLSScenario},
	{key: "fast-leak", name: "fast leak, ~200 MiB/s a worker", run: fastLeakScenario},
	{key: "standard-leak", name: "standard leak, ~20 MiB/s a worker", gate: true, run: standardLeakScenario},
	{key: "slow-drain", name: "recycle during a slow drain", run: slowDrainScenario},
	{key: "bad-deploy", gate: true, name: "bad deploy (binary exits 3), SIGHUP", run: badDeployScenario},
	{key: "shutdown", gate: true, name: "shutdown (SIGTERM) under load", run: shutdownScenario},
	{key: "hung-worker", gate: true, name: "hung worker (SIGSTOP)", run: hungWorkerScenario},
}

func scenarioKeys() []string {
	keys := make([]string, len(scenarios))
	for i, s := range scenarios {
		keys[i] = s.key
	}
	return keys
}

// stressConfig is the stress part's configuration.
type stressConfig struct {
	Short     bool          `json:"short"`     // the smoke run's shorter, smaller scenarios
	Duration  time.Duration `json:"-"`         // the load of most scenarios lasts this long
	Scenarios []string      `json:"scenarios"` // keys, in the order they run
}

// stressEnv is what every scenario gets.
type stressEnv struct {
	cfg stressConfig
	bin string // the subject, built once
	tmp string // a directory of the scenario's own
}

// pick returns full in a full run and short in the smoke run.
func pick[T any](env *stressEnv, full, short T) T {
	if env.cfg.Short {
		return short
	}
	return full
}

// stressRow is one scenario's result.
type stressRow struct {
	Key         string         `json:"key"`
	Scenario    string         `json:"scenario"`
	Requests    int            `json:"requests"`
	Failed      int            `json:"failed"`
	Failures    map[string]int `json:"failures,omitempty"`
	Retried     int            `json:"retried"`
	MaxRSSRatio float64        `json:"max_rss_over_limit,omitempty"` // 0: not a memory scenario
	LimitBytes  uint64         `json:"limit_bytes,omitempty"`
	Target      string         `json:"target"`
	Pass        bool           `json:"pass"`
	Gate        bool           `json:"gate"`
	Note        string         `json:"note,omitempty"`
	Err         string         `json:"error,omitempty"` // the harness could not run it
	Seconds     float64        `json:"seconds"`
}

// counted fills the row's request figures from t.
func (r *stressRow) counted(t totals) {
	r.Requests, r.Failed, r.Failures, r.Retried = t.requests, t.failed, t.failures, t.retried
}

// notef appends to the row's note.
func (r *stressRow) notef(format string, args ...any) {
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += oneLine(fmt.Sprintf(format, args...))
}

// oneLine keeps a note on one line of the table, and short: an error
// with the subject's stderr ends in its last lines.
func oneLine(s string) string {
	const most = 300
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > most {
		s = "…" + s[len(s)-most:]
	}
	return s
}

// stressPart is the stress part's result.
type stressPart struct {
	Part   string       `json:"part"`
	Config stressConfig `json:"config"`
	Rows   []stressRow  `json:"scenarios"`
}

// runStressPart builds the subject and runs every chosen scenario. A
// scenario the harness cannot run is a failed row, not an error of the
// part: the other rows still tell something.
func runStressPart(ctx context.Context, cfg stressConfig, tmp string, prog *progress) (*stressPart, error) {
	prog.note("stress scenarios: building the subject")
	bin, err := buildSubject(ctx, tmp)
	if err != nil {
		return nil, err
	}
	part := &stressPart{Part: "stress", Config: cfg}
	for _, s := range scenarios {
		if !slices.Contains(cfg.Scenarios, s.key) {
			continue
		}
		prog.note("stress: " + s.name)
		env := &stressEnv{cfg: cfg, bin: bin, tmp: tmp}
		start := time.Now()
		row := s.run(ctx, env)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		row.Key, row.Scenario, row.Gate, row.Seconds = s.key, s.name, s.gate, time.Since(start).Seconds()
		if row.Err != "" {
			row.Pass = false
		}
		part.Rows = append(part.Rows, row)
	}
	return part, nil
}

// gateFailures returns an error for every gated scenario that missed its
// target.
func (p *stressPart) gateFailures() []error {
	var errs []error
	for _, r := range p.Rows {
		if r.Gate && !r.Pass {
			errs = append(errs, fmt.Errorf("stress scenario %q (gated: it passed before) missed its target %q: %d of %d requests failed (%s), %d retried%s%s",
				r.Key, r.Target, r.Failed, r.Requests, failures(r.Failed, r.Failures), r.Retried, prefixed("; ", r.Note), prefixed("; ", r.Err)))
		}
	}
	return errs
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func (p *stressPart) print(w io.Writer) {
	mode := "full"
	if p.Config.Short {
		mode = "short (smoke)"
	}
	fmt.Fprintf(w, "\nStress scenarios (issue 7), %s; retried = sent more than once by Go's transport; gate = fails the run if it misses its target\n", mode)
	t := &table{}
	t.row("scenario", "requests", "failed", "retried", "highest RSS", "target", "result", "note")
	for _, r := range p.Rows {
		rss := "—"
		if r.LimitBytes > 0 && r.MaxRSSRatio > 0 {
			rss = fmt.Sprintf("%.2f× of %s", r.MaxRSSRatio, memory.FormatSize(r.LimitBytes))
		}
		result := "FAIL"
		if r.Pass {
			result = "pass"
		}
		if r.Gate {
			result += " (gate)"
		}
		note := r.Note
		if r.Err != "" {
			note = strings.TrimPrefix(note+"; not run: "+r.Err, "; ")
		}
		failed := fmt.Sprint(r.Failed)
		if r.Failed > 0 {
			failed = failures(r.Failed, r.Failures)
		}
		t.row(r.Scenario, fmt.Sprint(r.Requests), failed, fmt.Sprint(r.Retried), rss, r.Target, result, note)
	}
	t.write(w)
}

// errNotRun marks a row the harness could not run.
func (r *stressRow) notRun(err error) stressRow {
	r.Err = oneLine(err.Error())
	r.Pass = false
	return *r
}
