package proxy

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A request with no response header within RequestTimeout gets 504 and
// OnTimeout names its backend; a response whose header came is not timed
// out however long it streams.
func TestRequestTimeout(t *testing.T) {
	timeouts := make(chan int, 8)
	e := newEnv(t, Options{RequestTimeout: time.Second, OnTimeout: func(id int) { timeouts <- id }})
	a, b := e.backend(1, "a"), e.backend(2, "b")
	e.p.Add(a.id, a.addr())
	e.p.Add(b.id, b.addr())

	stream, err := e.client.Get(e.front.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	streaming := a
	if stream.Header.Get("X-Backend") == b.name {
		streaming = b
	}
	streaming.held(t)
	// The stream began first: by the time the hung request times out, the
	// stream is older than RequestTimeout.
	hung := e.get("/hold")
	if hung.err != nil || hung.status != http.StatusGatewayTimeout {
		t.Fatalf("hung request: %+v; want 504", hung)
	}
	hungOn := a
	if streaming == a {
		hungOn = b
	}
	if id := recv(t, timeouts, "OnTimeout"); id != hungOn.id {
		t.Fatalf("OnTimeout(%d); want %d", id, hungOn.id)
	}
	streaming.let(t)
	if got, err := io.ReadAll(stream.Body); err != nil || string(got) != "data: one\n\ndata: two\n\n" {
		t.Fatalf("stream: %q, %v", got, err)
	}
	select {
	case id := <-timeouts:
		t.Fatalf("OnTimeout(%d) called again", id)
	default:
	}
	if n := e.logs.count("request timed out"); n != 1 {
		t.Fatalf("timeout logged %d times; want 1", n)
	}
}

// A backend removed with a request in flight: the request gets 502 when its
// connection breaks, and nothing more is routed there.
func TestRemoveDuringRequest(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())
	// A POST: the Transport does not resend it on a new connection.
	req, err := http.NewRequest("POST", e.front.URL+"/hold", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan result, 1)
	go func() { results <- e.do(req) }()
	a.held(t)
	e.p.Remove(a.id)
	if n, served := e.p.Stats(a.id); n != 0 || served != 0 {
		t.Fatalf("Stats of a removed backend: %d, %d; want 0, 0", n, served)
	}
	a.srv.CloseClientConnections() // the worker dies
	if r := recv(t, results, "the request on the removed backend"); r.status != http.StatusBadGateway {
		t.Fatalf("request on a removed backend: %+v; want 502", r)
	}
	if n := e.logs.count("backend failed: 502"); n != 1 {
		t.Fatalf("502 logged %d times; want 1", n)
	}
	if r := e.get("/"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("request with no backend left: %+v; want 503", r)
	}
}

// pythonServer is a threaded python3 http.server on a port of its own
// choosing, printed first on stdout; /hold prints "held" and never answers.
const pythonServer = `
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/hold":
            print("held", flush=True)
            time.sleep(600)
        body = b"python"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
`

// A real python3 worker: served with keep-alive, then SIGKILLed with a
// request in flight, which gets 502. The Transport resends that GET, and
// its new connection is refused: the request still gets 502 and does not
// go to the other backend (it reached the worker, and may be what killed
// it).
func TestPythonWorker(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH: no real worker process to test with")
	}
	e := newEnv(t, Options{})
	cmd := exec.Command(python, "-c", pythonServer)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	port, err := strconv.Atoi(recv(t, lines, "python's port"))
	if err != nil {
		t.Fatalf("python printed no port: %v", err)
	}
	pid := cmd.Process.Pid
	e.p.Add(pid, "127.0.0.1:"+strconv.Itoa(port))
	for i := range 3 {
		if r := e.get("/"); r.status != 200 || r.body != "python" {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	held := e.goGet("/hold")
	if line := recv(t, lines, "python to hold the request"); line != "held" {
		t.Fatalf("python printed %q; want held", line)
	}
	if n, _ := e.p.Stats(pid); n != 1 {
		t.Fatalf("in flight: %d; want 1", n)
	}
	other := e.backend(2, "other")
	e.p.Add(other.id, other.addr())
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.p.Remove(pid)
	if r := recv(t, held, "the request on the killed worker"); r.status != http.StatusBadGateway {
		t.Fatalf("request on a killed worker: %+v; want 502", r)
	}
	if r := e.get("/"); r.status != 200 || r.backend != other.name {
		t.Fatalf("request after the kill: %+v; want 200 from the other backend", r)
	}
}

// A worker that stopped listening before the caller removed it: requests
// routed to it never reached it, so they go to another backend, or wait
// for one, instead of failing; it gets no more.
func TestUnreachableBackendRoutedAround(t *testing.T) {
	e := newEnv(t, Options{QueueTimeout: wait, QueueLimit: 8})
	a, b := e.backend(1, "a"), e.backend(2, "b")
	e.p.Add(a.id, a.addr())
	e.p.Add(b.id, b.addr())
	a.srv.Close() // a is gone, and nobody has called Remove
	for i := range 4 {
		req, err := http.NewRequest("POST", e.front.URL+"/count", strings.NewReader("four"))
		if err != nil {
			t.Fatal(err)
		}
		if r := e.do(req); r.status != 200 || r.backend != b.name || r.body != "4" {
			t.Fatalf("request %d with a gone: %+v; want 200 from b", i, r)
		}
	}
	if n := e.logs.count("backend cannot be reached"); n != 1 {
		t.Fatalf("unreachable backend logged %d times; want once", n)
	}
	if _, served := e.p.Stats(a.id); served != 1 {
		t.Fatalf("requests routed to the gone backend: %d; want 1, then none", served)
	}

	// With no backend reachable, the request waits for one to be added.
	// (d was never dialed: a gone backend's pooled connections would make
	// the request reach it, and fail as in flight.)
	d := e.backend(4, "d")
	d.srv.Close()
	e.p.Add(d.id, d.addr())
	e.p.Remove(b.id)
	queued := e.queuedEvents()
	waiting := e.goGet("/")
	recv(t, queued, "the request to queue")
	c := e.backend(3, "c")
	e.p.Add(c.id, c.addr())
	if r := recv(t, waiting, "the queued request"); r.status != 200 || r.backend != c.name {
		t.Fatalf("request with every backend gone: %+v; want 200 from c, added later", r)
	}
}
