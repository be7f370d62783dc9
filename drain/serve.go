package drain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// closeGrace bounds how long Serve waits, after the drain finished, for
// connections it asked to close gracefully (HTTP/2 ones finishing their
// GOAWAY) before it closes them outright.
const closeGrace = time.Second

// Serve serves srv on every listener until c's drain ends, then closes srv
// and returns the drain's Result. Something else starts the drain: a
// signal, a memory Watch, a supervisor, or the program itself.
//
// When the drain starts, Serve closes the listeners, so no new connection
// is accepted here (in a cluster, the other workers accept them from the
// shared queue). Open connections are not cut: every response during the
// drain carries "Connection: close", and HTTP/2 connections are sent
// GOAWAY, so clients leave of their own accord after their answer. A
// connection counts as work in flight from the moment it is accepted until
// it is idle, so a request that is still on its way in holds the drain open.
// A kept-alive connection whose client was not yet told to leave is kept
// for up to IdleLinger, so its next request is answered rather than cut.
// When the drain ends, HTTP/2 connections receive a final GOAWAY and
// whatever is still open is closed.
//
// Serve takes over srv.Handler (wrapping it with c.Handler), srv.BaseContext
// and srv.ConnState, and calls the values they had. srv must not be served
// elsewhere, and is closed when Serve returns.
//
// If a listener fails before the drain started, Serve starts the drain with
// reason Manual, and returns the Result together with the listener's error.
// If the drain ended before Serve was called, Serve returns its Result at
// once and leaves srv alone.
func Serve(srv *http.Server, c *Controller, listeners ...net.Listener) (Result, error) {
	if err := checkServeArgs(srv, c, listeners); err != nil {
		return Result{}, err
	}
	// The listeners hold the drain open until every srv.Serve call has
	// returned. srv.Serve registers an accepted connection (StateNew, which
	// takes its hold) before it calls Accept again, so once it returns no
	// connection can appear that the count does not know about.
	if c.add(hold)&flagDone != 0 {
		return c.Result(), nil // drained before it served: nothing to do
	}
	conns := newConnTracker(c)
	install(srv, c, conns)

	served := make(chan error, len(listeners))
	for _, ln := range listeners {
		go func() { served <- srv.Serve(ln) }()
	}
	pending := len(listeners)
	var serveErr error
	select {
	case <-c.Draining():
	case err := <-served:
		pending--
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("drain: serving HTTP: %w", err)
		}
		c.Start(Manual)
	}
	conns.drainStarted()
	for _, ln := range listeners {
		ln.Close()
	}
	for ; pending > 0; pending-- {
		<-served // a closed listener makes srv.Serve return; its error is expected
	}
	c.sub(hold)
	<-c.Done()
	closeConnections(srv, conns, c.Result().DeadlineExceeded)
	return c.Result(), serveErr
}

func checkServeArgs(srv *http.Server, c *Controller, listeners []net.Listener) error {
	switch {
	case srv == nil:
		return errors.New("drain: Serve needs an *http.Server, got nil")
	case c == nil:
		return errors.New("drain: Serve needs a *Controller, got nil")
	case len(listeners) == 0:
		return errors.New("drain: Serve needs at least one net.Listener")
	}
	for i, ln := range listeners {
		if ln == nil {
			return fmt.Errorf("drain: Serve: listener %d is nil", i)
		}
	}
	return nil
}

// install wires srv to c: requests are counted and carry c in their context,
// and connections are tracked by conns.
func install(srv *http.Server, c *Controller, conns *connTracker) {
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	if h, ok := next.(*handler); ok && h.c == c {
		next = h.next // already wrapped for c: count each request once
	}
	srv.Handler = &handler{c: c, next: next, servedByServe: true}

	baseContext := srv.BaseContext
	srv.BaseContext = func(ln net.Listener) context.Context {
		ctx := context.Background()
		if baseContext != nil {
			ctx = baseContext(ln)
		}
		return NewContext(ctx, c)
	}

	connState := srv.ConnState
	srv.ConnState = func(conn net.Conn, state http.ConnState) {
		conns.observe(conn, state)
		if connState != nil {
			connState(conn, state)
		}
	}
}

// closeConnections ends every connection once the drain is over. Shutdown,
// given a context that is already done, does exactly one round: it sends
// GOAWAY to HTTP/2 connections and closes idle HTTP/1 ones, without the
// polling that makes it slow.
func closeConnections(srv *http.Server, conns *connTracker, deadlineExceeded bool) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = srv.Shutdown(ctx)
	if !deadlineExceeded {
		conns.waitAllClosed(closeGrace)
	}
	_ = srv.Close()
}

// IdleLinger is how long, during a drain, Serve keeps open a connection
// that carries no request: a kept-alive one that is idle without having
// been told "Connection: close" (its last response began before the
// drain), or a new one whose first request has not arrived. Its client may
// be sending a request at that very moment: closing the connection then
// would fail the request (or make Go's transport retry it). Within
// IdleLinger the request arrives and is answered with "Connection: close";
// a connection silent for longer (a browser's preconnect, a load balancer's
// warm pool) is closed, so it cannot hold the drain to its deadline. Such a
// connection holds the drain open until then.
const IdleLinger = 100 * time.Millisecond

// connTracker holds the drain open for a connection while a request may be
// on it: from accept until idle, and again from the next request until
// idle. Holding from accept rather than from the handler closes the window
// in which a connection has been accepted but its request not yet read; a
// drain that ended inside that window would reset a client that did
// nothing wrong. During a drain, a connection with no request lingers for
// IdleLinger (see there) before it is closed.
type connTracker struct {
	c *Controller

	mu        sync.Mutex
	draining  bool
	open      map[net.Conn]*trackedConn
	allClosed chan struct{} // non-nil while someone waits for open to empty
}

type trackedConn struct {
	state  http.ConnState
	held   bool        // holds the controller's drain open
	since  time.Time   // when it was accepted, or last went idle
	linger *time.Timer // closes it if it stays without a request
}

func newConnTracker(c *Controller) *connTracker {
	return &connTracker{c: c, open: make(map[net.Conn]*trackedConn)}
}

func (t *connTracker) observe(conn net.Conn, state http.ConnState) {
	t.mu.Lock()
	tc := t.open[conn]
	if tc == nil {
		tc = &trackedConn{}
		t.open[conn] = tc
	}
	tc.state = state
	release := false
	switch state {
	case http.StateNew, http.StateActive:
		tc.stopLinger()
		tc.since = time.Now()
		if !tc.held {
			// Fails only after the drain ended; the request, if one comes,
			// is then refused by the handler with a 503.
			tc.held = t.c.add(hold)&flagDone == 0
		}
		if state == http.StateNew && t.draining && tc.held {
			t.startLinger(conn, tc, IdleLinger)
		}
	case http.StateIdle:
		tc.since = time.Now()
		if t.draining && tc.held {
			t.startLinger(conn, tc, IdleLinger)
		} else {
			release, tc.held = tc.held, false
		}
	case http.StateHijacked, http.StateClosed:
		// A hijacking handler still holds its request's unit until it
		// returns; the connection itself is no longer the server's.
		tc.stopLinger()
		release = tc.held
		delete(t.open, conn)
		if len(t.open) == 0 && t.allClosed != nil {
			close(t.allClosed)
			t.allClosed = nil
		}
	}
	t.mu.Unlock()
	if release {
		t.c.sub(hold) // outside the lock: it may end the drain
	}
}

// drainStarted makes every connection without a request linger: it holds
// the drain open until a request arrives on it or it has been silent for
// IdleLinger. Serve calls it while its listeners still hold the drain open,
// so the holds cannot fail.
func (t *connTracker) drainStarted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.draining = true
	for conn, tc := range t.open {
		if tc.state != http.StateNew && tc.state != http.StateIdle {
			continue
		}
		if !tc.held {
			tc.held = t.c.add(hold)&flagDone == 0
		}
		t.startLinger(conn, tc, IdleLinger-time.Since(tc.since))
	}
}

// startLinger closes conn after d unless a request arrives on it first.
// Closing it makes the server report StateClosed, which releases the hold.
func (t *connTracker) startLinger(conn net.Conn, tc *trackedConn, d time.Duration) {
	tc.stopLinger()
	var timer *time.Timer
	timer = time.AfterFunc(max(d, 0), func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if tc.linger == timer { // still without a request
			conn.Close()
		}
	})
	tc.linger = timer
}

func (tc *trackedConn) stopLinger() {
	if tc.linger != nil {
		tc.linger.Stop()
		tc.linger = nil
	}
}

// waitAllClosed waits until no connection is open, or for at most limit.
func (t *connTracker) waitAllClosed(limit time.Duration) {
	t.mu.Lock()
	if len(t.open) == 0 {
		t.mu.Unlock()
		return
	}
	if t.allClosed == nil {
		t.allClosed = make(chan struct{})
	}
	allClosed := t.allClosed
	t.mu.Unlock()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-allClosed:
	case <-timer.C:
	}
}
