package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// queuedEvents makes the proxy signal each request that joins the queue.
func (e *env) queuedEvents() <-chan struct{} {
	c := make(chan struct{}, 64)
	e.p.mu.Lock()
	e.p.queued = func() { c <- struct{}{} }
	e.p.mu.Unlock()
	return c
}

// Requests made while no backend is ready wait, and Add serves them.
func TestQueueServedOnAdd(t *testing.T) {
	e := newEnv(t, Options{QueueTimeout: wait, QueueLimit: 8})
	queued := e.queuedEvents()
	results := make(chan result, 3)
	for range 3 {
		go func() { results <- e.get("/") }()
	}
	for range 3 {
		recv(t, queued, "a request to queue")
	}
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())
	for range 3 {
		if r := recv(t, results, "a queued request"); r.status != 200 || r.backend != "a" {
			t.Fatalf("queued request: %+v; want 200 from a", r)
		}
	}
}

// A request that waits longer than QueueTimeout gets 503 with Retry-After.
func TestQueueTimeout(t *testing.T) {
	e := newEnv(t, Options{QueueTimeout: 50 * time.Millisecond, QueueLimit: 8})
	r := e.get("/")
	if r.err != nil || r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("request with no backend: %+v; want 503 with Retry-After", r)
	}
	if n := e.logs.count("within the queue timeout"); n != 1 {
		t.Fatalf("queue timeout logged %d times; want 1", n)
	}
	// The queue is empty again: a backend added now serves new requests.
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())
	if r := e.get("/"); r.status != 200 {
		t.Fatalf("after Add: %+v", r)
	}
}

// A full queue answers 503 at once; Close answers the queued ones 503.
func TestQueueFullAndClose(t *testing.T) {
	e := newEnv(t, Options{QueueTimeout: time.Hour, QueueLimit: 1})
	queued := e.queuedEvents()
	first := e.goGet("/")
	recv(t, queued, "the first request to queue")
	// The first waits for an hour: the second returns only if refused at once.
	if r := recv(t, e.goGet("/"), "the request over the queue limit"); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("request over the queue limit: %+v; want 503 with Retry-After", r)
	}
	e.p.Close()
	if r := recv(t, first, "the queued request after Close"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("queued request after Close: %+v; want 503", r)
	}
	if r := e.get("/"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("request after Close with no backend: %+v; want 503", r)
	}
}

// A reportedWait is one call of OnQueueWait.
type reportedWait struct {
	wait      time.Duration
	forwarded bool
}

// recordWaits returns an OnQueueWait that sends each of its calls on the
// channel it returns too.
func recordWaits() (func(time.Duration, bool), chan reportedWait) {
	waits := make(chan reportedWait, 8)
	return func(d time.Duration, forwarded bool) { waits <- reportedWait{d, forwarded} }, waits
}

// QueueLen counts the waiting requests, and OnQueueWait is told of each
// wait, forwarded or not; a request forwarded at once never waited.
func TestQueueLenAndWaits(t *testing.T) {
	onWait, waits := recordWaits()
	e := newEnv(t, Options{QueueTimeout: wait, QueueLimit: 8, OnQueueWait: onWait})
	queued := e.queuedEvents()
	results := make(chan result, 2)
	for range 2 {
		go func() { results <- e.get("/") }()
	}
	for range 2 {
		recv(t, queued, "a request to queue")
	}
	if n := e.p.QueueLen(); n != 2 {
		t.Fatalf("QueueLen with 2 requests waiting: %d", n)
	}
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())
	for range 2 {
		recv(t, results, "a queued request")
		if w := recv(t, waits, "a queue wait"); !w.forwarded || w.wait <= 0 {
			t.Fatalf("wait of a queued request that was served: %+v", w)
		}
	}
	if n := e.p.QueueLen(); n != 0 {
		t.Fatalf("QueueLen once the queue was served: %d", n)
	}
	if r := e.get("/"); r.status != 200 {
		t.Fatalf("request with a ready backend: %+v", r)
	}
	select {
	case w := <-waits:
		t.Fatalf("a request served at once reported a queue wait: %+v", w)
	default:
	}

	e.p.Drain(a.id)
	refused := e.goGet("/")
	recv(t, queued, "a request to queue after the drain")
	e.p.Close()
	if r := recv(t, refused, "the queued request after Close"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("queued request after Close: %+v; want 503", r)
	}
	if w := recv(t, waits, "the wait of a refused request"); w.forwarded {
		t.Fatalf("a request answered 503 reported forwarded: %+v", w)
	}
}

// A request that waits, is handed a backend it cannot dial, and waits
// again is reported once, forwarded, with its two waits summed.
func TestQueueWaitReportedOncePerRequest(t *testing.T) {
	onWait, waits := recordWaits()
	e := newEnv(t, Options{QueueTimeout: wait, QueueLimit: 8, OnQueueWait: onWait})
	queued := e.queuedEvents()
	result := e.goGet("/")
	recv(t, queued, "the request to queue")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	e.p.Add(9, dead)
	recv(t, queued, "the request to queue again, once the dial failed")
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())
	if r := recv(t, result, "the request"); r.status != 200 || r.backend != "a" {
		t.Fatalf("request: %+v; want 200 from a", r)
	}
	if w := recv(t, waits, "the request's wait"); !w.forwarded || w.wait <= 0 {
		t.Errorf("the request's wait: %+v; want one, forwarded", w)
	}
	select {
	case w := <-waits:
		t.Errorf("a second wait reported for one request: %+v", w)
	default:
	}
}

// A client that half-closes its connection once its request is sent
// (net/http then cancels the request) still reads: it gets the 503 of a
// request that found no backend, not an empty answer.
func TestHalfClosedClientGetsItsAnswer(t *testing.T) {
	e := newEnv(t, Options{QueueTimeout: wait, QueueLimit: 8})
	conn := e.dialFront()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("half-closed client got %s; want 503", resp.Status)
	}
}
