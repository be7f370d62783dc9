package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// An Upgrade tunnel is one request in flight until it closes: a drain
// waits for it, and the tunnel keeps working meanwhile.
func TestDrainHoldsUpgradeTunnel(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	conn, err := net.Dial("tcp", e.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
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
	if isClosed(done) {
		t.Fatal("Drain's channel closed while a tunnel is open")
	}
	conn.Close()
	recv(t, done, "Drain's channel to close after the tunnel closed")
}

// A server-sent event reaches the client while the response goes on.
func TestSSEFlushesThrough(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	res, err := e.client.Get(e.front.URL + "/stream")
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
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	body := &zeros{left: size, sampleEvery: 10 << 20, base: ms.HeapInuse}
	req, err := http.NewRequest("POST", e.front.URL+"/count", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked: nothing knows the size in advance
	r := e.do(req)
	if r.err != nil || r.status != 200 || r.body != strconv.Itoa(size) {
		t.Fatalf("upload: %+v; want 200 and %d bytes counted", r, size)
	}
	if body.samples < 9 {
		t.Fatalf("heap sampled %d times during the upload; want 9 or more", body.samples)
	}
	const bound = 16 << 20
	if body.maxGrowth > bound {
		t.Fatalf("heap in use grew by %d MiB during a %d MiB upload; want less than %d MiB", body.maxGrowth>>20, size>>20, bound>>20)
	}
	t.Logf("heap growth at most %d KiB during the upload", body.maxGrowth>>10)
}

// zeros is an upload body of left zero bytes that samples the heap in use
// every sampleEvery bytes, so the growth is seen while the upload runs.
type zeros struct {
	left, sampleEvery, sinceSample int
	base                           uint64
	maxGrowth                      uint64
	samples                        int
}

func (z *zeros) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), z.left)
	clear(p[:n])
	z.left -= n
	z.sinceSample += n
	if z.sinceSample >= z.sampleEvery {
		z.sinceSample = 0
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		z.samples++
		if ms.HeapInuse > z.base {
			z.maxGrowth = max(z.maxGrowth, ms.HeapInuse-z.base)
		}
	}
	return n, nil
}
