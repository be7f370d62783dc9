package drain

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connTracker holds the drain open for every connection on which a request
// may still arrive, and hands connections off where it can.
//
// Before the drain, a connection holds the drain from accept until it is
// idle, and again from its next request until idle: the window between
// accept and the first request is covered, so a drain cannot end while a
// request is on its way in.
//
// During the drain, a connection is closed only when no request can be on
// it. An idle or new connection is held until one of these happens:
//   - it is handed off (its listener implements Handoff, it is plain HTTP/1,
//     and it carries no request): the drain lets go of it at once;
//   - its next request arrives, which is answered with "Connection: close";
//   - its client closes it;
//   - the drain deadline.
//
// No timer closes a connection.
//
// HTTP/2 connections are sent GOAWAY by http2GoAway's function, which Serve
// calls when the drain starts; it reaches later ones too.
type connTracker struct {
	c *Controller

	mu       sync.Mutex
	draining bool
	open     map[net.Conn]*trackedConn // by the connection the server reports
}

func newConnTracker(c *Controller) *connTracker {
	return &connTracker{c: c, open: make(map[net.Conn]*trackedConn)}
}

// trackedConn is an accepted connection as the server sees it. It records
// the bytes the server has read that no request has consumed yet, so that
// the connection can be handed to another process in the middle of a
// request's header without losing a byte.
type trackedConn struct {
	net.Conn
	handoff Handoff // nil when the connection cannot be handed off

	mu        sync.Mutex
	state     http.ConnState
	held      bool // holds the controller's drain open
	http2     bool // spoke HTTP/2 (prior knowledge): never handed off
	sniffed   bool // the first bytes were checked for the HTTP/2 preface
	pending   []byte
	claimed   bool // reads fail from now on: it is being handed off
	committed bool // the server was told to let go; Close hands it off
	deadline  time.Time
}

// errHandedOff is what the server's read gets on a connection being handed
// off. It is an *net.OpError on "read", which net/http treats as a client
// gone away: it closes the connection without writing anything.
var errHandedOff = &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection handed off to another process")}

var http2Preface = []byte("PRI * HTTP/2.0")

// aLongTimeAgo interrupts a pending read at once.
var aLongTimeAgo = time.Unix(1, 0)

// trackedListener wraps each accepted connection in a trackedConn.
type trackedListener struct {
	net.Listener
	handoff Handoff // nil: never hand off (TLS, or a listener without Handoff)
}

func (l *trackedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*tls.Conn); ok {
		// The listener does TLS itself (tls.NewListener): net/http must
		// see the *tls.Conn to negotiate HTTP/2 and fill Request.TLS, so
		// it is tracked as it is, and never handed off.
		return tc, nil
	}
	return &trackedConn{Conn: conn, handoff: l.handoff}, nil
}

// Read records what the server reads while no request is being served, so
// that a hand-off can pass it on. Between requests, net/http reads the next
// request's first byte in a one-byte background read while the previous
// handler runs; everything else it reads outside StateActive belongs to the
// next request.
//
// A connection is claimed with at most three bytes of its next request
// in the server's buffer (see claim). Bytes that reach a read interrupted
// by a claim are kept from the server and handed off with the connection,
// if the Handoff takes that many (CanHandoff); otherwise they cancel the
// claim, and that request is served here.
//
// HTTP/1.1 pipelining is not supported across a hand-off: bytes of a
// pipelined request that arrived with the previous one sit in the server's
// buffer, unseen here, and a hand-off would lose them (no browser and no
// common client pipelines).
func (tc *trackedConn) Read(p []byte) (int, error) {
	if tc.handoff == nil {
		return tc.Conn.Read(p)
	}
	tc.mu.Lock()
	if tc.claimed {
		tc.committed = true
		tc.mu.Unlock()
		return 0, errHandedOff
	}
	tc.mu.Unlock()
	n, err := tc.Conn.Read(p)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if n > 0 && !tc.sniffed {
		tc.sniff(p[:n])
	}
	if tc.claimed {
		if n == 0 && isTimeout(err) {
			tc.committed = true // interrupted by the claim with nothing read
			return 0, errHandedOff
		}
		if n > 0 && tc.handoff.CanHandoff(len(tc.pending)+n) {
			// The client's bytes won the race, but the server has not
			// seen them: they go with the connection, and the request is
			// served by the process it is handed to. A draining process
			// serves nothing new, which matters most when it drains for
			// memory: every request served here grows it further.
			tc.pending = append(tc.pending, p[:n]...)
			tc.committed = true
			return 0, errHandedOff
		}
		// The bytes do not fit in a hand-off: the request is served here,
		// and answered with "Connection: close".
		tc.unclaim()
		if n > 0 && isTimeout(err) {
			err = nil
		}
	}
	switch {
	case n == 0 || tc.http2:
	case tc.state != http.StateActive:
		tc.pending = append(tc.pending, p[:n]...)
	case len(p) == 1: // the background read: the next request's first byte
		tc.pending = append(tc.pending[:0], p[0])
	}
	return n, err
}

// sniff marks a connection that opens with the HTTP/2 preface.
func (tc *trackedConn) sniff(b []byte) {
	seen := append(tc.pending, b...)
	k := min(len(seen), len(http2Preface))
	if string(seen[:k]) != string(http2Preface[:k]) {
		tc.sniffed = true
		return
	}
	if k == len(http2Preface) {
		tc.sniffed, tc.http2 = true, true
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// SetReadDeadline remembers the server's deadline, and keeps it in the past
// while the connection is being handed off.
func (tc *trackedConn) SetReadDeadline(t time.Time) error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.deadline = t
	if tc.claimed {
		return nil
	}
	return tc.Conn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and SetWriteDeadline.
func (tc *trackedConn) SetDeadline(t time.Time) error {
	if err := tc.SetReadDeadline(t); err != nil {
		return err
	}
	return tc.Conn.SetWriteDeadline(t)
}

// Close hands the connection off if the server let go of it for that
// reason, then closes this process's copy.
func (tc *trackedConn) Close() error {
	tc.mu.Lock()
	handOff := tc.committed
	tc.committed = false
	pending := tc.pending
	tc.mu.Unlock()
	if handOff {
		// An error leaves the client with a closed idle connection, as any
		// server's idle close would; its next request opens a new one.
		_ = tc.handoff.Handoff(tc.Conn, pending)
	}
	return tc.Conn.Close()
}

// ReadFrom keeps net/http's sendfile path for responses.
func (tc *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := tc.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{tc.Conn}, r)
}

// CloseWrite keeps net/http's lingering close for responses that did not
// read their whole request body.
func (tc *trackedConn) CloseWrite() error {
	if cw, ok := tc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// claim starts a hand-off if tc carries no request and can be handed off:
// the server's pending read fails, and its Close passes the connection on.
// A request that completes before the read fails takes the claim back (see
// observe). Called with tc.mu held.
//
// Only a connection with no partial request in the server's buffers is
// claimed. net/http reads a request's lines with bufio.Reader.ReadLine,
// which returns a partial line without its error, so a read failing in the
// middle of a header would be answered "400 Bad Request". A new connection
// is claimed before its first byte; an idle one while the server still
// waits for the four bytes it peeks before reading the next request. A
// connection whose request is arriving is left to finish it, and is
// answered with "Connection: close".
func (tc *trackedConn) claim() {
	if tc.handoff == nil || tc.http2 || tc.claimed {
		return
	}
	switch {
	case tc.state == http.StateNew && len(tc.pending) == 0:
	case tc.state == http.StateIdle && len(tc.pending) < 4:
	default:
		return
	}
	if !tc.handoff.CanHandoff(len(tc.pending)) {
		return
	}
	tc.claimed = true
	_ = tc.Conn.SetReadDeadline(aLongTimeAgo)
}

// unclaim gives the connection back to the server: a request arrived before
// the claim took effect. Called with tc.mu held.
func (tc *trackedConn) unclaim() {
	if tc.claimed && !tc.committed {
		tc.claimed = false
		_ = tc.Conn.SetReadDeadline(tc.deadline)
	}
}

// observe follows a connection through the server's states (srv.ConnState).
// conn is what the server reports: a trackedConn, or a *tls.Conn over one
// (ServeTLS) or over a plain connection (a listener that does TLS itself),
// or, from the HTTP/2 server, the h2Conn over one of those.
func (t *connTracker) observe(conn net.Conn, state http.ConnState) {
	if hc := h2ConnOf(conn); hc != nil {
		conn = hc.key
	}
	t.mu.Lock()
	tc := t.open[conn]
	if tc == nil {
		switch c := conn.(type) {
		case *trackedConn:
			tc = c
		case *tls.Conn:
			if tc, _ = c.NetConn().(*trackedConn); tc == nil {
				tc = &trackedConn{Conn: c} // never handed off
			}
		default:
			t.mu.Unlock()
			return // not from a listener Serve wrapped
		}
		t.open[conn] = tc
	}
	tc.mu.Lock()
	release := false
	tc.state = state
	switch state {
	case http.StateNew, http.StateActive:
		if state == http.StateActive {
			tc.pending = tc.pending[:0]
			tc.unclaim()
		}
		if !tc.held {
			// Fails only after the drain ended; the request, if one comes,
			// is then refused by the handler with a 503.
			tc.held = t.c.add(hold)&flagDone == 0
		}
		if t.draining {
			tc.claim()
		}
	case http.StateIdle:
		if t.draining {
			tc.claim()
		} else {
			release, tc.held = tc.held, false
		}
	case http.StateHijacked, http.StateClosed:
		// A hijacking handler still holds its request's unit until it
		// returns; the connection itself is no longer the server's.
		release, tc.held = tc.held, false
		delete(t.open, conn)
	}
	tc.mu.Unlock()
	t.mu.Unlock()
	if release {
		t.c.sub(hold) // outside the locks: it may end the drain
	}
}

// drainStarted holds the drain open for every connection that carries no
// request, and starts handing off the ones that can be. Serve calls it
// while its listeners still hold the drain open, so the holds cannot fail.
func (t *connTracker) drainStarted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.draining = true
	for _, tc := range t.open {
		tc.mu.Lock()
		if !tc.held {
			tc.held = t.c.add(hold)&flagDone == 0
		}
		tc.claim()
		tc.mu.Unlock()
	}
}
