package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/memdrain/memdrain/internal/testkit"
)

// An Upgrade tunnel is one request in flight until it closes: a drain
// waits for it, and the tunnel keeps working meanwhile.
func TestDrainHoldsUpgradeTunnel(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	conn := e.dialFront()
	if _, err := io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "echo" {
		t.Fatalf("upgrade answered %d, Upgrade %q; want 101, echo", res.StatusCode, res.Header.Get("Upgrade"))
	}
	echo := func(msg string) {
		t.Helper()
		if _, err := io.WriteString(conn, msg+"\n"); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != msg+"\n" {
			t.Fatalf("echo of %q: %q, %v", msg, line, err)
		}
	}
	echo("before")
	if n, _ := e.p.Stats(a.id); n != 1 {
		t.Fatalf("in flight with a tunnel open: %d; want 1", n)
	}

	done := e.p.Drain(a.id)
	echo("during the drain")
	if testkit.IsClosed(done) {
		t.Fatal("Drain's channel closed while a tunnel is open")
	}
	conn.Close()
	recv(t, done, "Drain's channel to close after the tunnel closed")
}

// A stream's first part reaches the client while the response goes on:
// server-sent events, and any response of unknown length.
func TestStreamsFlushThrough(t *testing.T) {
	for _, contentType := range []string{"text/event-stream", "application/x-ndjson"} {
		t.Run(contentType, func(t *testing.T) {
			e := newEnv(t, Options{})
			a := e.backend(1, "a")
			e.p.Add(a.id, a.addr())

			res, err := e.client.Get(e.front.URL + "/stream?type=" + url.QueryEscape(contentType))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			a.held(t)
			br := bufio.NewReader(res.Body)
			// The backend is still held: this event was flushed through.
			if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
				t.Fatalf("first event: %q, %v", line, err)
			}
			a.let(t)
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: two\n\n" {
				t.Fatalf("rest of the stream: %q, %v", rest, err)
			}
		})
	}
}

// An HTTP/1 app may answer while the upload still arrives.
func TestFullDuplex(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest("POST", e.front.URL+"/echo", pr)
	if err != nil {
		t.Fatal(err)
	}
	responses := make(chan *http.Response, 1)
	go func() {
		res, err := e.client.Do(req)
		if err != nil {
			pw.CloseWithError(err)
			close(responses)
			return
		}
		responses <- res
	}()
	if _, err := io.WriteString(pw, "first\n"); err != nil {
		t.Fatal(err)
	}
	// The upload is not finished: the response header and its first line
	// must come anyway.
	res := recv(t, responses, "the response while the upload goes on")
	if res == nil {
		t.Fatal("request failed")
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "got: first\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	io.WriteString(pw, "second\n")
	pw.Close()
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "second\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
}

// A 100 MiB upload streams through: the heap does not grow with it.
func TestLargeUploadHeapFlat(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	const size = 100 << 20
	heap := newHeapWatch()
	req, err := http.NewRequest("POST", e.front.URL+"/count", &zeros{left: size, heap: heap})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked: nothing knows the size in advance
	r := e.do(req)
	if r.err != nil || r.status != 200 || r.body != strconv.Itoa(size) {
		t.Fatalf("upload: %+v; want 200 and %d bytes counted", r, size)
	}
	heap.check(t, size)
}

// A 100 MiB download streams through: the heap does not grow with it.
func TestLargeDownloadHeapFlat(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	const size = 100 << 20
	heap := newHeapWatch()
	res, err := e.client.Get(e.front.URL + "/zeros?n=" + strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	n, err := io.Copy(heap, res.Body)
	if err != nil || n != size || res.StatusCode != 200 {
		t.Fatalf("download: %d, %d bytes, %v; want 200 and %d bytes", res.StatusCode, n, err, size)
	}
	heap.check(t, size)
}

// heapWatch samples the heap in use every 10 MiB passed to it, so the
// growth is seen while a transfer runs, not after the collector ran.
type heapWatch struct {
	base, maxGrowth uint64
	since, samples  int
}

func newHeapWatch() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &heapWatch{base: ms.HeapInuse}
}

// Write counts len(p) bytes passed.
func (h *heapWatch) Write(p []byte) (int, error) {
	h.passed(len(p))
	return len(p), nil
}

func (h *heapWatch) passed(n int) {
	h.since += n
	if h.since < 10<<20 {
		return
	}
	h.since = 0
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.samples++
	if ms.HeapInuse > h.base {
		h.maxGrowth = max(h.maxGrowth, ms.HeapInuse-h.base)
	}
}

func (h *heapWatch) check(t *testing.T, size int) {
	t.Helper()
	if h.samples < 9 {
		t.Fatalf("heap sampled %d times during the transfer; want 9 or more", h.samples)
	}
	const bound = 16 << 20
	if h.maxGrowth > bound {
		t.Fatalf("heap in use grew by %d MiB during a %d MiB transfer; want less than %d MiB", h.maxGrowth>>20, size>>20, bound>>20)
	}
	t.Logf("heap growth at most %d KiB during the transfer", h.maxGrowth>>10)
}

// zeros is a body of left zero bytes, reported to heap if set.
type zeros struct {
	left int
	heap *heapWatch
}

func (z *zeros) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), z.left)
	clear(p[:n])
	z.left -= n
	if z.heap != nil {
		z.heap.passed(n)
	}
	return n, nil
}

// A backend that answers before it has read the upload, then closes its
// connection: the client gets the answer, finishes its upload, and its
// connection serves the next request. (net/http panics on that connection
// if the handler returns while the Transport still reads the request
// body, golang/go#68560.)
func TestEarlyAnswerDuringUpload(t *testing.T) {
	e := newEnv(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			// Reads the header only, answers, closes.
			http.ReadRequest(bufio.NewReader(conn))
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nearly")
			conn.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		served.Wait()
	})
	e.p.Add(1, ln.Addr().String())

	conn := e.dialFront()
	br := bufio.NewReader(conn)
	read := func(what string) {
		t.Helper()
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != 200 || string(body) != "early" {
			t.Fatalf("%s: %d %q %v; want 200 early", what, res.StatusCode, body, err)
		}
	}
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nfirst")
	read("answer during the upload")
	io.WriteString(conn, "-half")
	io.WriteString(conn, "GET /next HTTP/1.1\r\nHost: test\r\n\r\n")
	read("next request on the same connection")
}

// A client that sends "Expect: 100-continue" gets the go-ahead through the
// proxy, then its answer.
func TestExpectContinue(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	conn := e.dialFront()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST /count HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusContinue {
		t.Fatalf("before the body: %v, %v; want 100 Continue", res, err)
	}
	io.WriteString(conn, "hello")
	for {
		res, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusContinue { // the backend's own 100 may follow
			break
		}
	}
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 || string(body) != "5" {
		t.Fatalf("answer: %d %q %v; want 200 5", res.StatusCode, body, err)
	}
}
