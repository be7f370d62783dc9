package proxy

import (
	"bufio"
	"cmp"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/logbuf"
)

// wait bounds every wait of the tests on an event.
const wait = 10 * time.Second

// env is one test's proxy, its front server on 127.0.0.1 and a client.
// Its cleanups run after those of the backends made with backend: the
// backends' held requests are released first, then the front closes.
type env struct {
	t      *testing.T
	p      *Proxy
	front  *httptest.Server
	client *http.Client
	logs   *logBuffer
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	logs := &logBuffer{}
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := New(opts)
	front := httptest.NewServer(p)
	client := &http.Client{Transport: &http.Transport{}, Timeout: wait}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		p.Close()
		front.Close()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs)
		}
	})
	return &env{t: t, p: p, front: front, client: client, logs: logs}
}

// dialFront opens a connection of the test's own to the front server, for
// requests written by hand; it fails after wait, and is closed when the
// test ends.
func (e *env) dialFront() net.Conn {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.front.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(wait))
	return conn
}

// A testBackend is an HTTP server on 127.0.0.1 answering with its name.
// Paths:
//
//	/hold    signals arrived, then waits for release (or the test's end)
//	         before answering, header included
//	/stream  answers a text/event-stream header (or the type in the query)
//	         and a first event at once, then waits for release before a
//	         second event
//	/echo    full duplex: answers the first line of the body at once, then
//	         copies the rest of the body
//	/count   reads the body and answers its length
//	/zeros   answers n zero bytes, n from the query, with no Content-Length
//	/headers answers the request's Host and X-Forwarded-* headers
//	Upgrade: echo  switches protocols and echoes the bytes until EOF
type testBackend struct {
	id      int
	name    string
	srv     *httptest.Server
	arrived chan struct{}
	release chan struct{}
	stop    chan struct{}
	closed  chan struct{} // one value per connection closed
}

func (e *env) backend(id int, name string) *testBackend {
	e.t.Helper()
	b := &testBackend{
		id:      id,
		name:    name,
		arrived: make(chan struct{}, 64),
		release: make(chan struct{}),
		stop:    make(chan struct{}),
		closed:  make(chan struct{}, 1024),
	}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed || s == http.StateHijacked {
			b.closed <- struct{}{}
		}
	}
	b.srv.Start()
	e.t.Cleanup(b.srv.Close)
	e.t.Cleanup(func() { close(b.stop) })
	return b
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

// held waits for a request to arrive at /hold or /stream.
func (b *testBackend) held(t *testing.T) {
	t.Helper()
	select {
	case <-b.arrived:
	case <-time.After(wait):
		t.Fatalf("no request arrived at backend %s", b.name)
	}
}

// let releases one held request.
func (b *testBackend) let(t *testing.T) {
	t.Helper()
	select {
	case b.release <- struct{}{}:
	case <-time.After(wait):
		t.Fatalf("no request held at backend %s", b.name)
	}
}

func (b *testBackend) waitReleased() {
	select {
	case <-b.release:
	case <-b.stop:
	}
}

func (b *testBackend) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Backend", b.name)
	if r.Header.Get("Upgrade") == "echo" {
		b.echoTunnel(w)
		return
	}
	switch r.URL.Path {
	case "/hold":
		b.arrived <- struct{}{}
		b.waitReleased()
	case "/stream":
		w.Header().Set("Content-Type", cmp.Or(r.URL.Query().Get("type"), "text/event-stream"))
		io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		b.arrived <- struct{}{}
		b.waitReleased()
		io.WriteString(w, "data: two\n\n")
		return
	case "/echo":
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		br := bufio.NewReader(r.Body)
		line, _ := br.ReadString('\n')
		io.WriteString(w, "got: "+line)
		rc.Flush()
		io.Copy(w, br)
		return
	case "/count":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, strconv.FormatInt(n, 10))
		return
	case "/zeros":
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.Copy(w, &zeros{left: n})
		return
	case "/headers":
		w.Header().Set("X-Seen-Host", r.Host)
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
			w.Header().Set("X-Seen-"+h[2:], r.Header.Get(h))
		}
	}
	io.WriteString(w, b.name)
}

func (b *testBackend) echoTunnel(w http.ResponseWriter) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	if brw.Flush() != nil {
		return
	}
	io.Copy(conn, brw)
}

// result is what a request through the proxy got.
type result struct {
	status  int
	backend string
	body    string
	header  http.Header
	err     error
}

func (e *env) do(req *http.Request) result {
	res, err := e.client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return result{status: res.StatusCode, backend: res.Header.Get("X-Backend"), body: string(body), header: res.Header, err: err}
}

func (e *env) get(path string) result {
	req, err := http.NewRequest("GET", e.front.URL+path, nil)
	if err != nil {
		return result{err: err}
	}
	return e.do(req)
}

// goGet makes the request in a goroutine; its result arrives on the channel.
func (e *env) goGet(path string) <-chan result {
	c := make(chan result, 1)
	go func() { c <- e.get(path) }()
	return c
}

func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// logBuffer collects a test's proxy log.
type logBuffer struct{ logbuf.Buffer }

func (l *logBuffer) count(s string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}
