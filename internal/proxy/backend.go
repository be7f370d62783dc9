package proxy

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
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
	proxy     *Proxy

	// Guarded by Proxy.mu.
	retired bool   // set by Drain, Remove or a failed dial: never routed to again
	served  uint64 // requests routed to it
}

func (p *Proxy) newBackend(id int, addr string) *backend {
	log := p.log.With("backend", id)
	// The deadline is the caller's (see Drain): the Controller's is set
	// beyond reach, so Done closes only when the count reaches zero.
	ctl, _ := drain.New(drain.Config{Timeout: math.MaxInt64, Logger: log}) // no error: the timeout is positive
	b := &backend{
		id:    id,
		addr:  addr,
		ctl:   ctl,
		log:   log,
		proxy: p,
		transport: &http.Transport{
			DialContext:         dial,
			MaxIdleConnsPerHost: maxIdleConnsPerBackend,
			IdleConnTimeout:     idleConnTimeout,
			// The client's Accept-Encoding passes through, and the body
			// comes back as the app encoded it.
			DisableCompression: true,
		},
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
		Transport: rt,
		// FlushInterval stays zero: ReverseProxy already flushes each
		// write at once for a response of unknown length (a stream) and
		// for text/event-stream. A response of known length goes through
		// the server's buffer instead, which spares each response a timer,
		// a goroutine and a write of its header alone (-1 measured 15 to
		// 25% slower per small proxied request, in one run with 0).
		BufferPool:   p.bufs,
		ErrorHandler: b.fail,
		// ReverseProxy logs here a backend that fails mid-body (the
		// response can then only be aborted); nothing else logs it.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return b
}

// forward sends r to the backend, on which it has been acquired, and
// reports whether it never reached it (its connection could not be dialed
// and no byte of it was written), so that it may go to another backend.
func (b *backend) forward(w http.ResponseWriter, r *http.Request) (unreached bool) {
	defer b.release()
	a := &attempt{ResponseWriter: w}
	a.trace.WroteHeaders = a.wroteHeaders
	b.rp.ServeHTTP(a, r.WithContext(httptrace.WithClientTrace(r.Context(), &a.trace)))
	return a.unreached
}

// An attempt is the ResponseWriter of one forwarding of a request, through
// which the ErrorHandler tells forward that the request never reached the
// backend. Unwrap keeps the server's optional interfaces reachable through
// http.ResponseController, which ReverseProxy uses to flush and to hijack.
type attempt struct {
	http.ResponseWriter
	trace httptrace.ClientTrace
	// written is set once the request's header is written to a connection.
	// A dial error after that is the Transport resending an idempotent
	// request whose connection broke: it reached the backend, and may be
	// what broke it, so it must not go to another one.
	written   atomic.Bool
	unreached bool
}

func (a *attempt) Unwrap() http.ResponseWriter { return a.ResponseWriter }

func (a *attempt) wroteHeaders() { a.written.Store(true) }

// dial connects to a backend. Its errors are dialErrors: the request that
// asked for the connection was not sent.
func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return conn, nil
}

var dialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// A dialError is the failure to connect to a backend.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

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
// else 502; except a request that never reached the backend, which forward
// sends elsewhere. It is ReverseProxy's ErrorHandler.
func (b *backend) fail(w http.ResponseWriter, r *http.Request, err error) {
	var unreached *dialError
	switch {
	case errors.Is(err, errHung):
		b.log.Warn("request timed out: 504", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "504 Gateway Timeout: the worker did not answer in time", http.StatusGatewayTimeout)
		if on := b.proxy.opts.OnTimeout; on != nil {
			on(b.id)
		}
	case r.Context().Err() != nil:
		// The client went away (or half-closed, and still reads): not
		// the backend's failure.
		b.log.Debug("request canceled by its client", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusBadGateway)
	case errors.As(err, &unreached):
		// A worker that cannot be dialed (it exited, or closed its
		// listener) is routed around until the caller removes it.
		first := b.proxy.retire(b)
		if on := b.proxy.opts.OnUnreachable; first && on != nil {
			defer on(b.id)
		}
		if a, ok := w.(*attempt); ok && !a.written.Load() {
			if first {
				b.log.Warn("backend cannot be reached: requests go to the others until it is removed", "err", err)
			}
			a.unreached = true
			return
		}
		b.log.Warn("backend failed: 502", "method", r.Method, "path", r.URL.Path, "err", err, "routed_around", first)
		http.Error(w, "502 Bad Gateway: the worker failed", http.StatusBadGateway)
	default:
		b.log.Warn("backend failed: 502", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "502 Bad Gateway: the worker failed", http.StatusBadGateway)
	}
}
