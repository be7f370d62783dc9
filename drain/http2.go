package drain

import (
	"context"
	"crypto/tls"
	"net/http"
)

// http2GoAway arranges for srv's HTTP/2 connections to be sent GOAWAY when
// the drain starts, idle ones included, and returns the function that sends
// it.
//
// net/http sends GOAWAY to every HTTP/2 connection only from
// Server.Shutdown, which also closes every idle HTTP/1 connection at once,
// cutting a request that may be on its way (and, for TLS, with a
// close_notify the server cannot take back). So srv's HTTP/2 is served by a
// shadow server's HTTP/2 set-up instead: the shadow, which serves nothing,
// configures net/http's bundled HTTP/2 server, its protocol handlers are
// copied into srv.TLSNextProto, and the shadow's Shutdown then reaches
// exactly the HTTP/2 connections, and nothing else.
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
	shadow := &http.Server{
		Protocols:   srv.Protocols,
		TLSConfig:   &tls.Config{},
		IdleTimeout: srv.IdleTimeout,
		ReadTimeout: srv.ReadTimeout,
	}
	// ServeTLS configures HTTP/2 first, then fails for want of a
	// certificate: the shadow never serves.
	_ = shadow.ServeTLS(nil, "", "")
	h2, ok := shadow.TLSNextProto["h2"]
	if !ok {
		return nothing // HTTP/2 is off in this build or by GODEBUG
	}
	// The "h2" entry is copied even when srv.Protocols leaves HTTP/2 over
	// TLS out: it is never negotiated then, and its presence is what keeps
	// srv from configuring an HTTP/2 server of its own over these entries.
	protos := map[string]func(*http.Server, *tls.Conn, http.Handler){"h2": h2}
	if h, ok := shadow.TLSNextProto["unencrypted_http2"]; ok && wantPlain {
		protos["unencrypted_http2"] = h
	}
	srv.TLSNextProto = protos
	return func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = shadow.Shutdown(ctx) // returns at once; the GOAWAYs go out from their connections
	}
}
