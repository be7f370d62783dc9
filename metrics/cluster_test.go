//go:build linux || darwin

package metrics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/loadgen"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// waitLimit bounds every wait on an event; a safety net, not a measurement.
const waitLimit = 60 * time.Second

// TestScrapeAfterAMemoryRecycle runs a real cluster of this test binary
// serving the leaky app, leaks until a worker is recycled for memory, then
// scrapes /metrics over HTTP as Prometheus would and checks that the
// counters moved with the right labels.
func TestScrapeAfterAMemoryRecycle(t *testing.T) {
	const workers = 2
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	events := make(chan cluster.Event, 10000)
	cfg := cluster.Config{
		Listeners:     []net.Listener{ln},
		Workers:       workers,
		MaxMemory:     96 << 20, // above a race-enabled worker at rest
		CheckInterval: 200 * time.Millisecond,
		WorkerEnv:     []string{"GORACE=atexit_sleep_ms=0"}, // spares each drain the race detector's exit sleep
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent:       func(e cluster.Event) { events <- e },
	}
	m := New(cfg)
	cfg.OnEvent = m.OnEvent(cfg.OnEvent)
	c, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Watch(c)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	admin := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer admin.Close()

	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(func(*cluster.Worker) error { return nil }) }()
	defer func() {
		c.Stop()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Error("the master did not stop")
		}
	}()
	waitFor := func(what string, match func(cluster.Event) bool) {
		t.Helper()
		deadline := time.After(waitLimit)
		for {
			select {
			case e := <-events:
				if match(e) {
					return
				}
			case err := <-runErr:
				runErr <- err
				t.Fatalf("the master returned (%v) while waiting for %s", err, what)
			case <-deadline:
				t.Fatalf("no %s within %v", what, waitLimit)
			}
		}
	}
	for ready := 0; ready < workers; {
		waitFor("ready", func(e cluster.Event) bool { return e.Kind == cluster.Ready })
		ready++
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	load := make(chan loadgen.Result, 1)
	go func() {
		load <- loadgen.Run(ctx, loadgen.Config{URL: "http://" + ln.Addr().String() + "/work?ms=1&leak=64", Clients: 2, KeepAlive: true})
	}()
	waitFor("a memory recycle's exit", func(e cluster.Event) bool {
		if e.Kind == cluster.OverLimit {
			t.Logf("over the limit: %+v", e)
		}
		return e.Kind == cluster.ExitedPlanned && e.Reason == drain.Memory
	})
	cancel()
	if r := <-load; r.Failed != 0 || r.Requests == 0 {
		t.Errorf("load: %v", r)
	}

	// A second worker may be on its way past the limit too: scrape once
	// the cluster is quiet, each slot's one worker serving and sampled. No
	// event marks a sample, so the snapshot is polled, within the bound.
	quiet := func() bool {
		s := c.Status()
		for _, w := range s {
			if w.State != cluster.StateServing || w.Memory == 0 {
				return false
			}
		}
		return len(s) == workers
	}
	for deadline := time.Now().Add(waitLimit); !quiet(); {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster is not quiet within %v: %+v", waitLimit, c.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}

	fs := scrape(t, admin.URL)
	if got := value(t, fs, "memdrain_recycles_total", map[string]string{"reason": "memory"}); got < 1 {
		t.Errorf("memdrain_recycles_total{reason=\"memory\"} = %v, want at least 1", got)
	}
	if got := value(t, fs, "memdrain_worker_exits_total", map[string]string{"kind": "accidental"}); got != 0 {
		t.Errorf("memdrain_worker_exits_total{kind=\"accidental\"} = %v, want 0", got)
	}
	if n := histogram(t, fs, "memdrain_drain_duration_seconds").GetSampleCount(); n < 1 {
		t.Errorf("drain histogram count %d, want at least 1", n)
	}
	if n := histogram(t, fs, "memdrain_over_limit_to_ready_seconds").GetSampleCount(); n < 1 {
		t.Errorf("over-limit-to-ready histogram count %d, want at least 1", n)
	}
	if got := value(t, fs, "memdrain_workers", map[string]string{"state": "serving"}); got != workers {
		t.Errorf("memdrain_workers{state=\"serving\"} = %v, want %d", got, workers)
	}
	memories := fs["memdrain_worker_memory_bytes"].GetMetric()
	if len(memories) != workers {
		t.Errorf("%d memdrain_worker_memory_bytes series, want one for each of the %d workers", len(memories), workers)
	}
	for _, mm := range memories {
		if mm.GetGauge().GetValue() <= 0 {
			t.Errorf("memdrain_worker_memory_bytes%v = %v, want > 0", mm.GetLabel(), mm.GetGauge().GetValue())
		}
	}
	// The counts are the workers' last reports, which may not have come
	// yet: only their presence is certain.
	for _, name := range []string{"memdrain_worker_requests_served_total", "memdrain_worker_requests_in_flight", "memdrain_worker_start_time_seconds"} {
		if n := len(fs[name].GetMetric()); n != len(memories) {
			t.Errorf("%d %s series, want one for each of the %d processes", n, name, len(memories))
		}
	}
	for slot := range workers {
		if got := value(t, fs, "memdrain_worker_memory_limit_bytes", map[string]string{"slot": string(rune('0' + slot))}); got != float64(cfg.MaxMemory) {
			t.Errorf("memdrain_worker_memory_limit_bytes{slot=\"%d\"} = %v, want %d", slot, got, cfg.MaxMemory)
		}
	}
}

// scrape gets url's /metrics and parses it as Prometheus's text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, body)
	}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "memdrain_") && !strings.Contains(l, "_bucket{") {
			lines = append(lines, l)
		}
	}
	t.Logf("the scrape, without its comments and buckets:\n%s", strings.Join(lines, "\n"))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fs, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, body)
	}
	return fs
}
