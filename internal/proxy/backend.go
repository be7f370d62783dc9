package proxy

import (
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// idleConnTimeout closes a pooled connection to a backend after this long
// unused. It is shorter than the keep-alive timeouts of common servers
// (gunicorn 2 s, Node 5 s), so the proxy, not the app, closes an idle
// connection: otherwise a request sent as the app closes it would fail,
// and only idempotent ones are retried by the Transport.
const idleConnTimeout = time.Second

// maxIdleConnsPerBackend is large so that, under load, connections are
// reused rather than closed after each request (the Transport's default
// keeps 2); idleConnTimeout trims them when the load falls.
const maxIdleConnsPerBackend = 1024

// A backend is one worker: its counter, its connection pool and the
// ReverseProxy that forwards to it.
type backend struct {
	id        int
	addr      string
	ctl       *drain.Controller
	transport *http.Transport
	rp        *httputil.ReverseProxy
	log       *slog.Logger
	onTimeout func(id int)

	// Guarded by Proxy.mu.
	draining bool   // set by Drain or Remove: never routed to again
	served   uint64 // requests routed to it
}

func (p *Proxy) newBackend(id int, addr string) *backend {
	log := p.log.With("backend", id)
	// The deadline is the caller's (see Drain): the Controller's is set
	// beyond reach, so Done closes only when the count reaches zero.
	ctl, err := drain.New(drain.Config{Timeout: math.MaxInt64, Logger: log})
	if err != nil {
		panic(err) // unreachable: the timeout is positive
	}
	b := &backend{
		id:   id,
		addr: addr,
		ctl:  ctl,
		log:  log,
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: maxIdleConnsPerBackend,
			IdleConnTimeout:     idleConnTimeout,
			// The client's Accept-Encoding passes through, and the body
			// comes back as the app encoded it.
			DisableCompression: true,
		},
		onTimeout: p.opts.OnTimeout,
	}
	var rt http.RoundTripper = b.transport
	if p.opts.RequestTimeout > 0 {
		rt = &headerTimeout{next: b.transport, timeout: p.opts.RequestTimeout}
	}
	target := &url.URL{Scheme: "http", Host: addr}
	b.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The app sees the Host the client asked for, as it would
			// without memdrain in front.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     rt,
		FlushInterval: -1,
		BufferPool:    p.bufs,
		ErrorHandler:  b.fail,
		// ReverseProxy logs here a backend that fails mid-body (the
		// response can then only be aborted); nothing else logs it.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return b
}

// release ends one request. The release that ends a drain closes the idle
// pooled connections: the connection of the last request may be returned
// to the pool after this, but CloseIdleConnections makes the Transport
// close connections that become idle later too.
func (b *backend) release() {
	b.ctl.Release()
	b.closeIdleIfDrained()
}

func (b *backend) closeIdleIfDrained() {
	select {
	case <-b.ctl.Done():
		b.transport.CloseIdleConnections()
	default:
	}
}

// fail answers a request the backend did not: 504 after RequestTimeout,
// else 502. It is ReverseProxy's ErrorHandler.
func (b *backend) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errHung):
		b.log.Warn("request timed out: 504", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "504 Gateway Timeout: the worker did not answer in time", http.StatusGatewayTimeout)
		if b.onTimeout != nil {
			b.onTimeout(b.id)
		}
	case r.Context().Err() != nil:
		// The client went away: not the backend's failure.
		b.log.Debug("request canceled by its client", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusBadGateway)
	default:
		b.log.Warn("backend failed: 502", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "502 Bad Gateway: the worker failed", http.StatusBadGateway)
	}
}
