package proxy

import (
	"testing"
	"time"
)

// Requests go to the backend with the fewest in flight, and in turn among
// equals.
func TestRoutesToFewestInFlight(t *testing.T) {
	e := newEnv(t, Options{})
	a, b := e.backend(1, "a"), e.backend(2, "b")
	e.p.Add(a.id, a.addr())
	e.p.Add(b.id, b.addr())

	// Both idle: in turn.
	first, second := e.get("/"), e.get("/")
	if first.err != nil || second.err != nil {
		t.Fatalf("requests failed: %v, %v", first.err, second.err)
	}
	if first.backend == second.backend {
		t.Fatalf("two requests to idle backends both went to %q; want one each, in turn", first.backend)
	}

	// One held on a backend: every request goes to the other one.
	held := e.goGet("/hold")
	var busy, idle *testBackend
	select {
	case <-a.arrived:
		busy, idle = a, b
	case <-b.arrived:
		busy, idle = b, a
	case r := <-held:
		t.Fatalf("held request returned: %+v", r)
	}
	for i := range 4 {
		r := e.get("/")
		if r.err != nil || r.backend != idle.name {
			t.Fatalf("request %d with one in flight on %s: backend %q, err %v; want %s", i, busy.name, r.backend, r.err, idle.name)
		}
	}
	if n, _ := e.p.Stats(busy.id); n != 1 {
		t.Fatalf("Stats(%d) in flight = %d; want 1", busy.id, n)
	}
	busy.let(t)
	if r := recv(t, held, "held request"); r.err != nil || r.backend != busy.name || r.status != 200 {
		t.Fatalf("held request: %+v; want 200 from %s", r, busy.name)
	}
	_, servedA := e.p.Stats(a.id)
	_, servedB := e.p.Stats(b.id)
	if servedA+servedB != 7 {
		t.Fatalf("served %d + %d; want 7 in all", servedA, servedB)
	}
}

// Drain's channel closes when the last request in flight ends, not before;
// the idle connections to the backend are closed after it.
func TestDrainEndsWithLastRequest(t *testing.T) {
	e := newEnv(t, Options{})
	// Only the drain may close the pooled connections in this test.
	e.p.idleConnTimeout = time.Hour
	a, b := e.backend(1, "a"), e.backend(2, "b")
	e.p.Add(a.id, a.addr())
	results := make(chan result, 2)
	for range 2 {
		go func() { results <- e.get("/hold") }()
	}
	a.held(t)
	a.held(t)
	e.p.Add(b.id, b.addr())

	done := e.p.Drain(a.id)
	if isClosed(done) {
		t.Fatal("Drain's channel closed with 2 requests in flight")
	}
	// b gets them all, even with more in flight than a.
	toB := make(chan result, 3)
	for range 3 {
		go func() { toB <- e.get("/hold") }()
		b.held(t)
	}
	for range 3 {
		b.let(t)
		if r := recv(t, toB, "a request made during the drain"); r.backend != b.name {
			t.Fatalf("request made during the drain: %+v; want 200 from b", r)
		}
	}
	for i := range 2 {
		if isClosed(done) {
			t.Fatalf("Drain's channel closed with %d requests in flight", 2-i)
		}
		a.let(t)
		if r := recv(t, results, "a released request"); r.status != 200 || r.backend != a.name {
			t.Fatalf("released request: %+v; want 200 from a", r)
		}
	}
	recv(t, done, "Drain's channel to close")
	if n, _ := e.p.Stats(a.id); n != 0 {
		t.Fatalf("in flight after the drain: %d", n)
	}
	// Both of the proxy's connections to a are closed by the proxy.
	recv(t, a.closed, "a pooled connection to close")
	recv(t, a.closed, "the other pooled connection to close")
	if again := e.p.Drain(a.id); !isClosed(again) {
		t.Fatal("a second Drain returned an open channel")
	}
	if unknown := e.p.Drain(99); !isClosed(unknown) {
		t.Fatal("Drain of an unknown id returned an open channel")
	}
}

// Add with an id already known replaces the backend; Add with an address
// that is not host:port is refused with a log line naming it.
func TestAddReplacesAndRefusesBadAddress(t *testing.T) {
	e := newEnv(t, Options{})
	a, b := e.backend(1, "a"), e.backend(2, "b")
	e.p.Add(7, a.addr())
	if r := e.get("/"); r.backend != a.name {
		t.Fatalf("request to 7 at a: %+v", r)
	}
	e.p.Add(7, b.addr())
	for i := range 3 {
		if r := e.get("/"); r.backend != b.name {
			t.Fatalf("request %d after 7 moved to b: %+v", i, r)
		}
	}
	if _, served := e.p.Stats(7); served != 3 {
		t.Fatalf("served by the new 7: %d; want 3 (counts start again)", served)
	}

	e.p.Add(8, "127.0.0.1")
	if n := e.logs.count(`addr=127.0.0.1 `); n != 1 {
		t.Fatalf("bad address logged %d times; want once, naming it", n)
	}
	e.p.Remove(7)
	if r := e.get("/"); r.status != 503 {
		t.Fatalf("request with only a bad address added: %+v; want 503", r)
	}
}
