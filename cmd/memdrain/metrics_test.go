//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/proxy"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeMetrics reads addr's /metrics into one value a series, keyed as
// the exposition writes them: name{label="value",...} with the labels in
// order; a histogram gives name_count and name_sum. It also returns the
// memdrain_ lines of the text, without their buckets, to log.
func scrapeMetrics(t *testing.T, addr string) (map[string]float64, string) {
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
	return values, strings.Join(lines, "\n")
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

// scrapeUntil scrapes addr until done holds, and returns that scrape; it
// fails t if done does not hold within 10 s. The supervisor logs an event
// before its metrics count it, and the front counts a request and then
// times it: a scrape may fall between the two.
func scrapeUntil(t *testing.T, addr, what string, done func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		values, text := scrapeMetrics(t, addr)
		if done(values) {
			t.Logf("the scrape with %s, without its comments, buckets and other metrics:\n%s", what, text)
			return values
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scrape with %s within 10 s; the last:\n%s", what, text)
		}
	}
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
	before, _ := scrapeMetrics(t, metricsAddr)
	want(t, before, `memdrain_workers{state="serving"}`, "2", func(v float64) bool { return v == 2 })
	want(t, before, `memdrain_worker_memory_limit_bytes{slot="0"}`, "60Mi", func(v float64) bool { return v == 60<<20 })
	want(t, before, `memdrain_recycles_total{reason="memory"}`, "0", func(v float64) bool { return v == 0 })
	want(t, before, `memdrain_queue_length`, "0", func(v float64) bool { return v == 0 })
	want(t, before, `process_resident_memory_bytes`, "memdrain's own, > 0", func(v float64) bool { return v > 0 })

	var during map[string]float64
	answered := loadUntilRecycled(t, m, 2, func() {
		during = scrapeUntil(t, metricsAddr, "2 recycles counted", func(v map[string]float64) bool {
			return v[`memdrain_recycles_total{reason="memory"}`] >= 2 && v[`memdrain_drain_duration_seconds_count`] >= 2 &&
				v[`memdrain_over_limit_to_ready_seconds_count`] >= 2
		})
	})
	want(t, during, `memdrain_recycles_total{reason="memory"}`, "≥ 2", func(v float64) bool { return v >= 2 })
	want(t, during, `memdrain_worker_exits_total{kind="accidental"}`, "0", func(v float64) bool { return v == 0 })
	want(t, during, `memdrain_over_limit_to_ready_seconds_count`, "≥ 2", func(v float64) bool { return v >= 2 })
	want(t, during, `memdrain_drain_duration_seconds_count`, "≥ 2", func(v float64) bool { return v >= 2 })

	// The load has stopped: its requests are all counted. A request it
	// abandoned as it stopped may have been answered too, one a client.
	codes := func(v map[string]float64) float64 {
		return v[`memdrain_http_requests_total{code="200"}`] + v[`memdrain_http_requests_total{code="499"}`]
	}
	after := scrapeUntil(t, metricsAddr, "every request counted and timed", func(v map[string]float64) bool {
		return v[`memdrain_http_requests_total{code="200"}`] >= float64(answered) && v[`memdrain_http_request_duration_seconds_count`] == codes(v)
	})
	want(t, after, `memdrain_http_requests_total{code="200"}`, fmt.Sprintf("the %d answered, up to 8 more", answered),
		func(v float64) bool { return v >= float64(answered) && v <= float64(answered+8) })
	for key, v := range after {
		if strings.HasPrefix(key, "memdrain_http_requests_total{") && key != `memdrain_http_requests_total{code="200"}` && key != `memdrain_http_requests_total{code="499"}` {
			t.Errorf("%s = %v; want only 200, and 499 for requests the load abandoned", key, v)
		}
	}

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
// before it opens --listen, and leaves the file to the first; a file left
// by a memdrain that died, naming a pid that now belongs to another
// process, does not stop a start. A --metrics address in use is refused
// with its flag named.
func TestPidFileAndMetricsAddressInUse(t *testing.T) {
	need(t, "python3")
	dir := writeApp(t, "app.py", leakyPython)
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	first := start(t, dir, []string{"--workers", "1", "--pid-file", pidFile}, "python3", "app.py")
	first.waitReady(t, 1)

	second := launch(t, dir, "run", "--listen", first.addr, "--workers", "1", "--pid-file", pidFile, "--", "python3", "app.py")
	if code := second.wait(t, time.Minute); code != 2 || !strings.Contains(second.output(), fmt.Sprintf("--pid-file %s: memdrain %d runs with it", pidFile, first.cmd.Process.Pid)) {
		t.Errorf("a second memdrain on the same --pid-file and --listen exited %d, said:\n%s", code, second.output())
	}
	if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != strconv.Itoa(first.cmd.Process.Pid) {
		t.Errorf("--pid-file holds %q after the refused start; want the first memdrain's pid", b)
	}

	stale := filepath.Join(t.TempDir(), "stale.pid")
	if err := os.WriteFile(stale, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := start(t, dir, []string{"--workers", "1", "--pid-file", stale}, "python3", "app.py")
	third.waitReady(t, 1)
	if b, _ := os.ReadFile(stale); strings.TrimSpace(string(b)) != strconv.Itoa(third.cmd.Process.Pid) {
		t.Errorf("a stale --pid-file holds %q once memdrain started; want its pid %d", b, third.cmd.Process.Pid)
	}
	third.stop(t)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fourth := start(t, dir, []string{"--workers", "1", "--metrics", busy.Addr().String(), "--control", ""}, "python3", "app.py")
	if code := fourth.wait(t, time.Minute); code != 2 || !strings.Contains(fourth.output(), "--metrics "+busy.Addr().String()) {
		t.Errorf("memdrain with --metrics on an address in use exited %d, said:\n%s", code, fourth.output())
	}
	first.stop(t)
}

// frontUnderTest serves handler through the front's metrics on a loopback
// server, and says on finished the path of each request whose handling
// (its counting included) is over.
type frontUnderTest struct {
	metrics  *frontMetrics
	srv      *httptest.Server
	finished chan string
}

func newFrontUnderTest(t *testing.T, handler http.Handler) *frontUnderTest {
	f := &frontUnderTest{metrics: newFrontMetrics(), finished: make(chan string, 16)}
	instrumented := f.metrics.instrument(handler)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { f.finished <- r.URL.Path }()
		instrumented.ServeHTTP(w, r)
	}))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the panics below are on purpose
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

// waitFinished waits for the request to path to be counted.
func (f *frontUnderTest) waitFinished(t *testing.T, path string) {
	t.Helper()
	select {
	case p := <-f.finished:
		if p != path {
			t.Fatalf("request %s finished; want %s", p, path)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("request %s did not finish", path)
	}
}

// get requests path, reads what comes of the answer, and waits for the
// request to be counted.
func (f *frontUnderTest) get(t *testing.T, path string) {
	t.Helper()
	if resp, err := http.Get(f.srv.URL + path); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	f.waitFinished(t, path)
}

// getAndLeave requests path and cancels the request once arrived says the
// server has it, or, with arrived nil, once its header came.
func (f *frontUnderTest) getAndLeave(t *testing.T, path string, arrived <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+path, nil)
	header := make(chan struct{})
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close() // the body may still be coming: this leaves
		}
		close(header)
	}()
	if arrived == nil {
		arrived = header
	}
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("the request to %s did not arrive", path)
	}
	cancel()
	<-header
	f.waitFinished(t, path)
}

// wantCounts fails t unless the front counted exactly these requests by
// code, and timed timed of them.
func (f *frontUnderTest) wantCounts(t *testing.T, want map[string]float64, timed uint64) {
	t.Helper()
	for code, n := range want {
		var m dto.Metric
		if err := f.metrics.requests.WithLabelValues(code).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != n {
			t.Errorf("memdrain_http_requests_total{code=%q} = %v; want %v", code, got, n)
		}
	}
	var m dto.Metric
	if err := f.metrics.duration.Write(&m); err != nil || m.GetHistogram().GetSampleCount() != timed {
		t.Errorf("memdrain_http_request_duration_seconds timed %d requests (%v); want %d", m.GetHistogram().GetSampleCount(), err, timed)
	}
}

// The front counts each response under its final status code: 200 for a
// handler that wrote nothing, the code after an informational 1xx, 101 for
// an Upgrade (whose answer is written on the hijacked connection, and which
// is not timed), the code a response began with when it is aborted, 499
// for nothing written to a connection that had gone, and 500 for nothing
// written by a handler that panicked.
func TestFrontCountsStatusCodes(t *testing.T) {
	arrived := make(chan struct{}, 1)
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
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("the beginning"))
		// Sent, so that the client sees a response cut, not a connection
		// closed before any answer, which its Transport would retry.
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("a bug") })
	f := newFrontUnderTest(t, mux)

	f.get(t, "/nothing")
	f.get(t, "/early-hints")
	f.get(t, "/abort")
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Errorf("upgrade answered %q, %v", line, err)
	}
	conn.Close()
	f.waitFinished(t, "/upgrade")
	f.getAndLeave(t, "/gone", arrived)
	// A panic closes the connection, and the Transport retries a GET
	// that got no byte: one or two requests.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(f.srv.URL + "/panic")
	if err == nil {
		resp.Body.Close()
		t.Errorf("a handler that panicked answered %s", resp.Status)
	}
	f.waitFinished(t, "/panic")

	f.wantCounts(t, map[string]float64{"200": 1, "404": 1, "206": 1, "101": 1, "499": 1, "500": 1, "103": 0, "502": 0}, 5)
}

// Through the proxy, as memdrain run serves: a client that leaves while
// its request waits in the queue is counted 499, not 503, and its wait
// refused; a worker's own 502 stays 502 when the client leaves during its
// body; a tunnel's 101 and a full queue's 503 (which never waited) are
// counted.
func TestFrontCountsTheProxysAnswers(t *testing.T) {
	var (
		p       *proxy.Proxy // set before the first request
		mu      sync.Mutex
		waits   []bool // served or not, as OnQueueWait reported them
		arrived = make(chan struct{}, 2)
	)
	f := newFrontUnderTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/queued" {
			arrived <- struct{}{}
		}
		p.ServeHTTP(w, r)
	}))
	p = proxy.New(proxy.Options{QueueTimeout: time.Minute, QueueLimit: 1, Log: slog.New(slog.DiscardHandler),
		OnQueueWait: func(d time.Duration, served bool) {
			f.metrics.queueWait(d, served)
			mu.Lock()
			waits = append(waits, served)
			mu.Unlock()
		}})
	defer p.Close()

	// No worker: the request waits, and its client leaves.
	f.getAndLeave(t, "/queued", arrived)

	release := make(chan struct{})
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bad-gateway":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("the worker's own 502, "))
			http.NewResponseController(w).Flush()
			<-release // the rest never comes: the client leaves first
		case "/upgrade":
			conn, brw, _ := http.NewResponseController(w).Hijack()
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
		}
	}))
	defer worker.Close()
	defer close(release)
	p.Add(1, worker.Listener.Addr().String())
	f.getAndLeave(t, "/bad-gateway", nil)

	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Errorf("upgrade through the proxy answered %q, %v", line, err)
	}
	conn.Close()
	f.waitFinished(t, "/upgrade")

	// No worker again, and a queue of one: of two requests, one waits
	// and the other is answered 503 at once; then the first leaves.
	<-p.Drain(1)
	ctx, leave := context.WithCancel(context.Background())
	answered := make(chan int, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/queued", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answered <- 0
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the two requests did not arrive")
		}
	}
	if code := <-answered; code != http.StatusServiceUnavailable {
		t.Errorf("with the queue full: %d; want 503", code)
	}
	leave()
	if code := <-answered; code != 0 {
		t.Errorf("the request that waited, canceled: %d; want no answer", code)
	}
	f.waitFinished(t, "/queued")
	f.waitFinished(t, "/queued")
	f.wantCounts(t, map[string]float64{"499": 2, "502": 1, "101": 1, "503": 1, "200": 0}, 4)
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 2 || waits[0] || waits[1] {
		t.Errorf("queue waits reported, served or not: %v; want two refused (the 503 never waited)", waits)
	}
}
