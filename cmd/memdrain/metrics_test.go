//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeMetrics reads addr's /metrics into one value a series, keyed as
// the exposition writes them: name{label="value",...} with the labels in
// order; a histogram gives name_count and name_sum.
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v: %s", resp.Status, err, body)
	}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "memdrain_") && !strings.Contains(l, "_bucket{") {
			lines = append(lines, l)
		}
	}
	t.Logf("a scrape, without its comments, buckets and other metrics:\n%s", strings.Join(lines, "\n"))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	values := make(map[string]float64)
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name + labelsOf(m)
			switch {
			case m.Counter != nil:
				values[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				values[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				values[name+"_count"+labelsOf(m)] = float64(m.Histogram.GetSampleCount())
				values[name+"_sum"+labelsOf(m)] = m.Histogram.GetSampleSum()
			}
		}
	}
	return values
}

func labelsOf(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var pairs []string
	for _, l := range m.GetLabel() {
		pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(pairs)
	return "{" + strings.Join(pairs, ",") + "}"
}

// want fails t unless the series key is in values and ok(its value).
func want(t *testing.T, values map[string]float64, key, what string, ok func(float64) bool) {
	t.Helper()
	v, found := values[key]
	if !found || !ok(v) {
		t.Errorf("%s = %v (in the scrape: %v); want %s", key, v, found, what)
	}
}

// memdrain run --metrics serves the supervisor's metrics and the front's:
// scraped while a leaking app is recycled under load, the recycles are
// counted for memory, and every request the load made is counted 200,
// with no other code. --pid-file holds memdrain's pid while it runs, puts
// the control socket beside it, and is removed at the end.
func TestMetricsDuringRecycles(t *testing.T) {
	need(t, "python3")
	dir := writeApp(t, "app.py", leakyPython)
	metricsAddr := freeAddr(t)
	pidFile := filepath.Join(t.TempDir(), "memdrain.pid")
	m := start(t, dir, []string{"--workers", "2", "--max-memory", "60Mi", "--metrics", metricsAddr, "--pid-file", pidFile}, "python3", "app.py")
	m.waitReady(t, 2)

	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(m.cmd.Process.Pid) {
		t.Errorf("--pid-file holds %q (%v); want memdrain's pid %d", b, err, m.cmd.Process.Pid)
	}
	before := scrapeMetrics(t, metricsAddr)
	want(t, before, `memdrain_workers{state="serving"}`, "2", func(v float64) bool { return v == 2 })
	want(t, before, `memdrain_worker_memory_limit_bytes{slot="0"}`, "60Mi", func(v float64) bool { return v == 60<<20 })
	want(t, before, `memdrain_recycles_total{reason="memory"}`, "0", func(v float64) bool { return v == 0 })
	want(t, before, `memdrain_queue_length`, "0", func(v float64) bool { return v == 0 })
	want(t, before, `process_resident_memory_bytes`, "memdrain's own, > 0", func(v float64) bool { return v > 0 })

	var during map[string]float64
	answered := loadUntilRecycled(t, m, 2, func() { during = scrapeMetrics(t, metricsAddr) })
	want(t, during, `memdrain_recycles_total{reason="memory"}`, "≥ 2", func(v float64) bool { return v >= 2 })
	want(t, during, `memdrain_worker_exits_total{kind="accidental"}`, "0", func(v float64) bool { return v == 0 })
	want(t, during, `memdrain_over_limit_to_ready_seconds_count`, "≥ 2", func(v float64) bool { return v >= 2 })
	want(t, during, `memdrain_drain_duration_seconds_count`, "≥ 2", func(v float64) bool { return v >= 2 })

	// The load has stopped: its requests are all counted. A request it
	// abandoned as it stopped may have been answered too, one a client.
	after := scrapeMetrics(t, metricsAddr)
	want(t, after, `memdrain_http_requests_total{code="200"}`, fmt.Sprintf("the %d answered, up to 8 more", answered),
		func(v float64) bool { return v >= float64(answered) && v <= float64(answered+8) })
	for key, v := range after {
		if strings.HasPrefix(key, "memdrain_http_requests_total{") && key != `memdrain_http_requests_total{code="200"}` && key != `memdrain_http_requests_total{code="499"}` {
			t.Errorf("%s = %v; want only 200, and 499 for requests the load abandoned", key, v)
		}
	}
	want(t, after, `memdrain_http_request_duration_seconds_count`, "every request counted",
		func(v float64) bool {
			return v == after[`memdrain_http_requests_total{code="200"}`]+after[`memdrain_http_requests_total{code="499"}`]
		})

	if _, errOut, code := memdrainCtl(t, "stop", "--pid-file", pidFile); code != 0 {
		t.Fatalf("memdrain stop --pid-file exited %d: %s", code, errOut)
	}
	if code := m.wait(t, time.Minute); code != 0 {
		t.Errorf("memdrain exited %d after memdrain stop; want 0", code)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("--pid-file after memdrain stopped: %v; want it removed", err)
	}
}

// A second memdrain run with the --pid-file of one that runs is refused,
// and leaves the file to the first; a --metrics address in use is refused
// with its flag named.
func TestPidFileAndMetricsAddressInUse(t *testing.T) {
	need(t, "python3")
	dir := writeApp(t, "app.py", leakyPython)
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	first := start(t, dir, []string{"--workers", "1", "--pid-file", pidFile}, "python3", "app.py")
	first.waitReady(t, 1)

	second := start(t, dir, []string{"--workers", "1", "--pid-file", pidFile}, "python3", "app.py")
	if code := second.wait(t, time.Minute); code != 2 || !strings.Contains(second.output(), fmt.Sprintf("--pid-file %s: process %d", pidFile, first.cmd.Process.Pid)) {
		t.Errorf("a second memdrain on the same --pid-file exited %d, said:\n%s", code, second.output())
	}
	if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != strconv.Itoa(first.cmd.Process.Pid) {
		t.Errorf("--pid-file holds %q after the refused start; want the first memdrain's pid", b)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	third := start(t, dir, []string{"--workers", "1", "--metrics", busy.Addr().String(), "--control", ""}, "python3", "app.py")
	if code := third.wait(t, time.Minute); code != 2 || !strings.Contains(third.output(), "--metrics "+busy.Addr().String()) {
		t.Errorf("memdrain with --metrics on an address in use exited %d, said:\n%s", code, third.output())
	}
	first.stop(t)
}

// The front counts each response under its final status code: 200 for a
// handler that wrote nothing, the code after an informational 1xx, 101 for
// an Upgrade (whose answer is written on the hijacked connection), 499
// for the proxy's 502 to a client that had gone, and its own code for a
// response aborted after its header, as the proxy aborts one.
func TestFrontCountsStatusCodes(t *testing.T) {
	front := newFrontMetrics()
	started := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/nothing", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusNotFound)
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack through the front's writer: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
		w.WriteHeader(http.StatusBadGateway)
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("the beginning"))
		// Sent, so that the client sees a response cut, not a connection
		// closed before any answer, which its Transport would retry.
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	finished := make(chan string, 5)
	instrumented := front.instrument(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { finished <- r.URL.Path }()
		instrumented.ServeHTTP(w, r)
	}))
	defer srv.Close()
	recvPath := func(path string) {
		t.Helper()
		select {
		case p := <-finished:
			if p != path {
				t.Fatalf("request %s finished; want %s", p, path)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("request %s did not finish", path)
		}
	}

	for _, path := range []string{"/nothing", "/early-hints", "/abort"} {
		resp, err := http.Get(srv.URL + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body) // /abort's fails: the response was cut
			resp.Body.Close()
		} else if path != "/abort" {
			t.Fatal(err)
		}
		recvPath(path)
	}

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Errorf("upgrade answered %q, %v", line, err)
	}
	conn.Close()
	recvPath("/upgrade")

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/gone", nil)
	gone := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request to /gone did not start")
	}
	cancel()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the canceled request did not end")
	}
	recvPath("/gone")

	for code, n := range map[string]float64{"200": 1, "404": 1, "206": 1, "101": 1, "499": 1, "103": 0, "502": 0} {
		var m dto.Metric
		if err := front.requests.WithLabelValues(code).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != n {
			t.Errorf("memdrain_http_requests_total{code=%q} = %v; want %v", code, got, n)
		}
	}
	var m dto.Metric
	if err := front.duration.Write(&m); err != nil || m.GetHistogram().GetSampleCount() != 5 {
		t.Errorf("memdrain_http_request_duration_seconds counted %d requests (%v); want 5", m.GetHistogram().GetSampleCount(), err)
	}
}
