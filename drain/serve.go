package drain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// Serve serves srv on every listener until c's drain ends, then closes srv
// and the listeners, and returns the drain's Result. Something else starts
// the drain: a signal, a memory Watch, a supervisor, or the program itself.
//
// When the drain starts, Serve closes the listeners, so no new connection
// is accepted here (in a cluster, the other workers accept them from the
// shared queue). No connection on which a request may be on its way is
// closed:
//   - every response whose header is written from then on carries
//     "Connection: close", and HTTP/1 closes its connection after it;
//   - every HTTP/2 connection is sent GOAWAY, idle ones included, in the
//     two steps of RFC 9113 (a first GOAWAY and a PING, then the final
//     GOAWAY once the client answered), so no stream is refused; it closes
//     once its client's streams are done;
//   - a connection that carries no request (idle between requests, or new
//     without a complete request) is handed off if its listener implements
//     Handoff; otherwise it is kept until its next request arrives (and is
//     answered with "Connection: close") or its client closes it.
//
// The drain ends when the last request ends and no connection is left that
// may carry one, or at the drain deadline, when whatever is still open is
// closed. No timer closes a connection before that.
//
// If srv.TLSConfig is set, Serve serves TLS on every listener, negotiating
// HTTP/2 as srv.ServeTLS does; the config must hold a certificate
// (Certificates, GetCertificate or GetConfigForClient). A plain-HTTP client
// is then refused by the TLS handshake. Without a TLSConfig, Serve serves
// HTTP/1 and, if srv.Protocols enables it, unencrypted HTTP/2.
//
// Serve takes over srv.Handler (wrapping it with c.Handler), srv.BaseContext,
// srv.ConnState and, unless the program set it, srv.TLSNextProto; it calls
// the values they had. srv must not be served elsewhere, and is closed when
// Serve returns.
//
// Serve owns srv's shutdown: the program must not call srv.Shutdown or
// srv.Close beside it (for example from its own signal.Notify code); it
// starts the drain with c.Start instead. A Shutdown or Close made before
// the drain started is logged as that mistake (a warning on c's Logger) and
// starts the drain with reason Manual. srv.RegisterOnShutdown functions run
// when the drain ends (Serve calls srv.Shutdown then), not when it starts:
// a handler that waits for them holds the drain to its deadline, so
// long-lived handlers select on c.Draining or DrainingFromContext instead.
//
// If a listener fails before the drain started, Serve starts the drain with
// reason Manual, and returns the Result together with the listener's error.
// If the drain ended before Serve was called, Serve closes the listeners and
// returns the Result at once.
func Serve(srv *http.Server, c *Controller, listeners ...net.Listener) (Result, error) {
	if err := checkServeArgs(srv, c, listeners); err != nil {
		return Result{}, err
	}
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	// The listeners hold the drain open until every srv.Serve call has
	// returned. srv.Serve registers an accepted connection (StateNew, which
	// takes its hold) before it calls Accept again, so once it returns no
	// connection can appear that the count does not know about.
	if c.add(hold)&flagDone != 0 {
		return c.Result(), nil // drained before it served: nothing to do
	}
	goAway := http2GoAway(srv)
	conns := newConnTracker(c)
	if testHookServe != nil {
		testHookServe(conns)
	}
	install(srv, c, conns)

	served := make(chan error, len(listeners))
	for _, ln := range listeners {
		tracked := &trackedListener{Listener: ln}
		if h, ok := ln.(Handoff); ok && srv.TLSConfig == nil {
			tracked.handoff = h
		}
		go func() {
			if srv.TLSConfig != nil {
				served <- srv.ServeTLS(tracked, "", "")
			} else {
				served <- srv.Serve(tracked)
			}
		}()
	}
	pending := len(listeners)
	var serveErr error
	select {
	case <-c.Draining():
	case err := <-served:
		pending--
		if errors.Is(err, http.ErrServerClosed) {
			// Only the program can have closed srv: Serve shuts it down
			// after the drain, never before.
			c.log.Warn("drain: srv.Shutdown or srv.Close was called beside drain.Serve or ListenAndServe; draining with reason manual. Start the drain with Controller.Start (or cancel ListenAndServe's context) and remove the program's own Shutdown call")
		} else {
			serveErr = fmt.Errorf("drain: serving HTTP: %w", err)
		}
		c.Start(Manual)
	}
	conns.drainStarted()
	goAway()
	for _, ln := range listeners {
		ln.Close()
	}
	for ; pending > 0; pending-- {
		<-served // a closed listener makes srv.Serve return; its error is expected
	}
	c.sub(hold)
	<-c.Done()
	// Every connection is closed by now, unless the deadline fired. Close
	// also runs srv's shutdown functions and ends hijacked connections'
	// server side.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = srv.Shutdown(ctx)
	_ = srv.Close()
	return c.Result(), serveErr
}

// testHookServe, when set by a test, sees each Serve call's tracker.
var testHookServe func(*connTracker)

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
	if cfg := srv.TLSConfig; cfg != nil && len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return errors.New("drain: Serve: srv.TLSConfig has no certificate; set Certificates, GetCertificate or GetConfigForClient (for example with tls.LoadX509KeyPair), or leave TLSConfig nil to serve plain HTTP")
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
			if hc := h2ConnOf(conn); hc != nil {
				conn = hc.key // the program sees the connection it was served, not the GOAWAY wrapper
			}
			connState(conn, state)
		}
	}
}
