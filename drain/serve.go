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
func Serve(srv *http.Server, c *Controller, listeners ...net.Listener) (Result, error) {
	if err := checkServeArgs(srv, c, listeners); err != nil {
		return Result{}, err
	}
	// The listeners hold a unit of their own until every srv.Serve call has
	// returned. srv.Serve registers an accepted connection (StateNew, which
	// acquires its unit) before it calls Accept again, so once it returns no
	// connection can appear that the count does not know about.
	if !c.Acquire() {
		return c.Result(), errors.New("drain: Serve called after the drain ended")
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
	c.Release()
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

// IdleLinger is how long, during a drain, Serve keeps open a kept-alive
// connection that is idle without having been told "Connection: close"
// (its last response began before the drain). Its client will reuse it for
// the next request at any moment: closing it then would fail that request
// (or make Go's transport retry it). Within IdleLinger the request arrives
// and is answered with "Connection: close"; a connection idle for longer
// is closed. Such a connection counts as work in flight until then.
const IdleLinger = 100 * time.Millisecond

// connTracker counts a connection as one unit of work while a request may
// be on it: from accept until idle, and again from the first byte of the
// next request until idle. Counting from accept rather than from the
// handler closes the window in which a connection has been accepted but
// its request not yet read; a drain that ended inside that window would
// reset a client that did nothing wrong. An HTTP/2 connection is active
// while it has a stream open, so it too holds one unit for all its
// requests. During a drain, an idle connection holds its unit for
// IdleLinger (see there).
type connTracker struct {
	c *Controller

	mu        sync.Mutex
	draining  bool
	open      map[net.Conn]*trackedConn
	allClosed chan struct{} // non-nil while someone waits for open to empty
}

type trackedConn struct {
	held      bool        // holds a unit of the controller
	idleSince time.Time   // zero while active
	linger    *time.Timer // closes the connection at the end of its linger
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
	release := false
	switch state {
	case http.StateNew, http.StateActive:
		tc.stopLinger()
		tc.idleSince = time.Time{}
		if !tc.held {
			// Acquire fails only after the drain ended; the request, if
			// one comes, is then refused by the handler with a 503.
			tc.held = t.c.Acquire()
		}
	case http.StateIdle:
		tc.idleSince = time.Now()
		if t.draining && tc.held {
			t.startLinger(conn, tc, IdleLinger)
		} else {
			release, tc.held = tc.held, false
		}
	case http.StateHijacked, http.StateClosed:
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
		t.c.Release() // outside the lock: it may end the drain
	}
}

// drainStarted makes every idle connection linger: it holds a unit again
// until its client uses it once more or it has been idle for IdleLinger.
// Serve calls it while its listeners still hold their unit, so the
// acquisitions cannot fail.
func (t *connTracker) drainStarted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.draining = true
	for conn, tc := range t.open {
		if !tc.held && !tc.idleSince.IsZero() {
			tc.held = t.c.Acquire()
			t.startLinger(conn, tc, IdleLinger-time.Since(tc.idleSince))
		}
	}
}

// startLinger closes conn after d unless it becomes active first. Closing it
// makes the server report StateClosed, which releases the unit.
func (t *connTracker) startLinger(conn net.Conn, tc *trackedConn, d time.Duration) {
	tc.stopLinger()
	var timer *time.Timer
	timer = time.AfterFunc(max(d, 0), func() {
		t.mu.Lock()
		stillIdle := tc.linger == timer
		t.mu.Unlock()
		if stillIdle {
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
