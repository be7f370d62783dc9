package drain

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// http2GoAway arranges for srv's HTTP/2 connections to be sent GOAWAY when
// the drain starts, idle ones included, and returns the function that
// starts it. Each connection gets the two-step GOAWAY of RFC 9113, section
// 6.8 (see goaway.go), so that no stream its client opens in the meantime
// is refused; a connection whose HTTP/2 begins later (its TLS handshake or
// preface was still under way) gets it when it begins.
//
// net/http sends GOAWAY to HTTP/2 connections only from Server.Shutdown,
// which also closes every idle HTTP/1 connection at once, cutting a
// request that may be on its way (and, for TLS, with a close_notify the
// server cannot take back). So srv's HTTP/2 is served by shadow servers'
// HTTP/2 set-up instead, one shadow for each connection: a shadow, which
// serves nothing itself, configures net/http's bundled HTTP/2 server, and
// its Shutdown then reaches exactly its one HTTP/2 connection, which sends
// its GOAWAY once its own client has answered the PING, whatever the
// others do. Every connection, h2c or over TLS, is given to the shadow's
// "unencrypted_http2" handler, the one through which the bundled server
// takes a net.Conn that net/http passes it (a *tls.Conn cannot be
// wrapped), wrapped in an h2Conn; over TLS the wrapper reports the TLS
// state, and the server treats it as TLS. A shadow costs a few
// microseconds and about 2 KB for each HTTP/2 connection.
//
// When the program configured srv.TLSNextProto itself (with
// golang.org/x/net/http2, say, or to disable HTTP/2), srv is left alone:
// its HTTP/2 connections are then sent GOAWAY only with their next
// response, and an idle one holds the drain until its client closes it or
// the deadline.
func http2GoAway(srv *http.Server) (goAway func()) {
	nothing := func() {}
	if srv.TLSNextProto != nil {
		return nothing
	}
	wantTLS, wantPlain := true, false
	if p := srv.Protocols; p != nil {
		wantTLS, wantPlain = p.HTTP2(), p.UnencryptedHTTP2()
	}
	if !wantTLS && !wantPlain {
		return nothing
	}
	if _, _, ok := newShadow(srv); !ok {
		return nothing // HTTP/2 is off in this build or by GODEBUG
	}
	d := &h2Drain{conns: make(map[*h2Conn]struct{})}
	// The "h2" entry is set even when srv.Protocols leaves HTTP/2 over TLS
	// out: it is never negotiated then, and its presence is what keeps srv
	// from configuring an HTTP/2 server of its own over these entries.
	protos := map[string]func(*http.Server, *tls.Conn, http.Handler){
		"h2": func(hs *http.Server, tc *tls.Conn, h http.Handler) {
			d.serve(srv, hs, tc, tc, tc, h)
		},
	}
	if wantPlain {
		protos["unencrypted_http2"] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
			plain, ok := tc.NetConn().(interface{ UnencryptedNetConn() net.Conn })
			if !ok {
				// Not net/http's hand-over: the shadow's handler reports it.
				if serve, _, ok := newShadow(srv); ok {
					serve(hs, tc, h)
				}
				return
			}
			conn := plain.UnencryptedNetConn()
			d.serve(srv, hs, conn, conn, nil, h)
		}
	}
	srv.TLSNextProto = protos
	return d.start
}

// newShadow returns a shadow server's handler for an HTTP/2 connection
// handed over by net/http ("unencrypted_http2"), and the shadow's
// Shutdown, which sends GOAWAY to the connections that handler serves.
func newShadow(srv *http.Server) (serve func(*http.Server, *tls.Conn, http.Handler), shutdown func(), ok bool) {
	shadow := &http.Server{
		Protocols:   srv.Protocols,
		TLSConfig:   &tls.Config{},
		IdleTimeout: srv.IdleTimeout,
		ReadTimeout: srv.ReadTimeout,
	}
	// ServeTLS configures HTTP/2 first, then fails for want of a
	// certificate: the shadow never serves.
	_ = shadow.ServeTLS(nil, "", "")
	serve, ok = shadow.TLSNextProto["unencrypted_http2"]
	shutdown = func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = shadow.Shutdown(ctx) // returns at once; the GOAWAY goes out from the connection's loop
	}
	return serve, shutdown, ok
}

// h2Drain holds one server's HTTP/2 connections, and asks each for the
// two-step GOAWAY once the drain started.
type h2Drain struct {
	mu       sync.Mutex
	draining bool
	conns    map[*h2Conn]struct{}
}

// serve serves one HTTP/2 connection through an h2Conn and its own shadow
// server, until the connection ends. under is what the HTTP/2 server reads
// and writes, key the connection as srv's ConnState reports it, and tc the
// TLS connection, if any (its client preface is still to be read).
func (d *h2Drain) serve(srv, hs *http.Server, under, key net.Conn, tc *tls.Conn, h http.Handler) {
	shadowServe, shutdown, ok := newShadow(srv)
	if !ok {
		return // cannot happen: HTTP/2 was available when srv was set up
	}
	hc := newH2Conn(under, key, shutdown, tc != nil)
	var conn net.Conn = hc
	if tc != nil {
		conn = &h2TLSConn{h2Conn: hc, tls: tc}
	}
	d.mu.Lock()
	d.conns[hc] = struct{}{}
	draining := d.draining
	d.mu.Unlock()
	defer func() {
		hc.close()
		d.mu.Lock()
		delete(d.conns, hc)
		d.mu.Unlock()
	}()
	if draining {
		hc.goAway()
	}
	shadowServe(hs, tls.Client(handedOver{conn: conn}, nil), h2Handler{next: h})
}

// start asks every HTTP/2 connection, and every later one, for the
// two-step GOAWAY.
func (d *h2Drain) start() {
	d.mu.Lock()
	d.draining = true
	conns := make([]*h2Conn, 0, len(d.conns))
	for hc := range d.conns {
		conns = append(conns, hc)
	}
	d.mu.Unlock()
	for _, hc := range conns {
		hc.goAway()
	}
}

// handedOver carries a connection to the bundled HTTP/2 server's
// "unencrypted_http2" handler inside a *tls.Conn that is never used, as
// net/http does: the handler serves what UnencryptedNetConn returns.
type handedOver struct {
	net.Conn // nil: never used
	conn     net.Conn
}

func (h handedOver) UnencryptedNetConn() net.Conn { return h.conn }
