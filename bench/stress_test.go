package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
)

// closingServer answers the first request on each connection with a
// kept-alive response, then reads the second request whole and closes the
// connection without answering: what a drain that cuts a kept-alive
// connection does to a client who sent its next request at that moment.
func closingServer(t *testing.T) (url string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				r := bufio.NewReader(conn)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if i == 1 {
						return // read, never answered
					}
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/"
}

func TestSendCountsTheTransportsSilentRetry(t *testing.T) {
	url := closingServer(t)
	c := clientSpec{proto: http1, keepAlive: true, timeout: 10 * time.Second}.client()
	defer c.CloseIdleConnections()

	if o := send(c, http.MethodGet, url); o.failure != "" || o.retried {
		t.Fatalf("first GET on a new connection: failure %q, retried %v; want success, not retried", o.failure, o.retried)
	}
	// The kept-alive connection is reused and cut under the request: the
	// transport sends the GET again on a new connection, and it succeeds.
	if o := send(c, http.MethodGet, url); o.failure != "" || !o.retried {
		t.Fatalf("GET on a connection cut under it: failure %q, retried %v; want success, retried", o.failure, o.retried)
	}
	// A POST is not sent again: it fails, and was not retried.
	if o := send(c, http.MethodPost, url); o.failure != "eof" || o.retried {
		t.Fatalf("POST on a connection cut under it: failure %q, retried %v; want eof, not retried", o.failure, o.retried)
	}
}

func TestSendWithoutKeepAliveIsNeverRetried(t *testing.T) {
	url := closingServer(t)
	c := clientSpec{proto: http1, timeout: 10 * time.Second}.client()
	defer c.CloseIdleConnections()
	for i := range 3 {
		if o := send(c, http.MethodGet, url); o.failure != "" || o.retried {
			t.Fatalf("GET %d on a connection of its own: failure %q, retried %v; want success, not retried", i, o.failure, o.retried)
		}
	}
}

// tcpPair returns both ends of a connection on 127.0.0.1.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// waits records the waits a delayConn asks for instead of waiting.
type waits []time.Duration

func (w *waits) wait(d time.Duration) { *w = append(*w, d) }

func TestDelaysFirstWriteWaitsOnceFromTheDial(t *testing.T) {
	raw, peer := tcpPair(t)
	var w waits
	dialed := time.Now()
	c := delays{FirstWrite: 150 * time.Millisecond}.Wrap(raw, dialed, w.wait)
	for range 3 {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// What is left of 150 ms after the dial: no more, and not nothing
	// (the test does not take 150 ms to get here).
	if len(w) != 1 || w[0] > 150*time.Millisecond || w[0] <= 0 {
		t.Fatalf("waits %v; want one wait of at most 150ms, before the first write only", w)
	}
	readN(t, peer, 3)
}

func TestDelaysSecondFlightWaitsAfterTheFirstRead(t *testing.T) {
	raw, peer := tcpPair(t)
	var w waits
	c := delays{SecondFlight: 150 * time.Millisecond}.Wrap(raw, time.Now(), w.wait)
	write(t, c, "hello") // the first flight: not delayed
	readN(t, peer, 5)
	write(t, peer, "server flight")
	readN(t, c, len("server flight"))
	write(t, c, "finished") // the second flight: delayed
	write(t, c, "request")  // after it: not delayed
	readN(t, peer, len("finished")+len("request"))
	if fmt.Sprint(w) != "[150ms]" {
		t.Fatalf("waits %v; want [150ms]: the first write after the first read only", w)
	}
}

func TestDelaysEveryWrite(t *testing.T) {
	raw, peer := tcpPair(t)
	var w waits
	c := delays{EveryWrite: 50 * time.Millisecond}.Wrap(raw, time.Now(), w.wait)
	for range 3 {
		write(t, c, "x")
	}
	readN(t, peer, 3)
	if fmt.Sprint(w) != "[50ms 50ms 50ms]" {
		t.Fatalf("waits %v; want 50ms before each of 3 writes", w)
	}
}

func TestDelayedWriteEndsWhenTheConnectionCloses(t *testing.T) {
	raw, _ := tcpPair(t)
	c := delays{FirstWrite: time.Hour}.Wrap(raw, time.Now(), nil)
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("x"))
		wrote <- err
	}()
	c.Close()
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("a write waiting on a closed connection succeeded; want an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write waiting an hour was not ended by Close")
	}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func readN(t *testing.T, c net.Conn, n int) {
	t.Helper()
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

func TestTallyTotalsByStart(t *testing.T) {
	t0 := time.Now()
	var tl tally
	tl.add(outcome{start: t0})
	tl.add(outcome{start: t0.Add(time.Second), failure: "eof", retried: true})
	tl.add(outcome{start: t0.Add(2 * time.Second), failure: "other: " + strings.Repeat("x", 100)})
	all := tl.totals(time.Time{}, time.Time{})
	if all.requests != 3 || all.failed != 2 || all.retried != 1 || all.failures["eof"] != 1 {
		t.Fatalf("totals %+v; want 3 requests, 2 failed (1 eof), 1 retried", all)
	}
	for k := range all.failures {
		if len(k) > 64 {
			t.Errorf("failure kind %q not shortened", k)
		}
	}
	late := tl.totals(t0.Add(time.Second), t0.Add(2*time.Second))
	if late.requests != 1 || late.failed != 1 {
		t.Fatalf("totals from 1 s to 2 s %+v; want the one request that started at 1 s", late)
	}
}

func TestParseScenarios(t *testing.T) {
	got, err := parseScenarios("hung-worker, reload,reload")
	if err != nil || fmt.Sprint(got) != "[reload hung-worker]" {
		t.Fatalf("parseScenarios = %v, %v; want [reload hung-worker] in the run's order", got, err)
	}
	_, err = parseScenarios("reload,nope")
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "hung-worker") {
		t.Fatalf("parseScenarios(reload,nope) error %v; want one naming nope and the accepted keys", err)
	}
}

func TestEveryScenarioHasAKeyAndRun(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range scenarios {
		if s.key == "" || s.name == "" || s.run == nil || seen[s.key] {
			t.Errorf("scenario %+v: want a unique key, a name and a run", s.key)
		}
		seen[s.key] = true
	}
}

func TestOnlyGatedScenariosFailTheRun(t *testing.T) {
	p := &stressPart{Rows: []stressRow{
		{Key: "a", Gate: true, Pass: true},
		{Key: "b", Gate: false, Pass: false, Failed: 3, Requests: 9},
		{Key: "c", Gate: true, Pass: false, Failed: 1, Requests: 9, Failures: map[string]int{"eof": 1}},
	}}
	errs := p.gateFailures()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `"c"`) || !strings.Contains(errs[0].Error(), "eof 1") {
		t.Fatalf("gateFailures = %v; want one error, for the gated scenario c that failed, with its failures", errs)
	}
	var out strings.Builder
	p.print(&out)
	if !strings.Contains(out.String(), "FAIL (gate)") || !strings.Contains(out.String(), "pass (gate)") {
		t.Fatalf("the table does not mark the gated rows:\n%s", out.String())
	}
}

func TestFailureKindDropsTheURL(t *testing.T) {
	c := clientSpec{proto: http1TLS, timeout: 10 * time.Second}.client()
	defer c.CloseIdleConnections()
	// A plain HTTP server asked for HTTPS: an "other" failure.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	o := send(c, http.MethodGet, "https"+strings.TrimPrefix(srv.URL, "http"))
	if !strings.HasPrefix(o.failure, "other: ") || strings.Contains(o.failure, "127.0.0.1") {
		t.Fatalf("failure %q; want an other: kind without the URL", o.failure)
	}
}

// TestAnExitsPeakCountsInTheHighestRSS: VmHWM is read every sampleEvery,
// and a worker that grows after its last reading, up to its exit, peaks
// unseen; its exit event carries the peak, which must count.
func TestAnExitsPeakCountsInTheHighestRSS(t *testing.T) {
	c := &stressCluster{limit: 64 << 20, live: map[int]int{}, changed: make(chan struct{})}
	c.handle(eventlog.Event{Kind: cluster.Started.String(), Pid: 7, Worker: 0})
	c.handle(eventlog.Event{Kind: cluster.ExitedPlanned.String(), Pid: 7, Worker: 0, Memory: 80 << 20})
	if got := c.peakRatio(); got != 1.25 {
		t.Errorf("highest RSS %.2f× of the limit, want 1.25× (the exit's peak)", got)
	}
}
