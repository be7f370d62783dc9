// Package proxy is the front of memdrain run: clients connect to memdrain,
// and every request is forwarded to one of the worker processes, each an
// HTTP server listening on a loopback port of its own.
//
// The proxy counts the requests each worker has in flight with a
// drain.Controller of its own (the counter the middleware uses, one per
// worker), so a worker being recycled is drained exactly: the channel Drain
// returns is closed by the release of its last request, tunnels included.
// Client connections end at the proxy, so a recycle never closes one.
//
// Forwarding is net/http/httputil.ReverseProxy. Request and response bodies
// are streamed, never buffered whole. A response of unknown length (a
// stream) or of type text/event-stream is flushed to the client as the
// backend writes it; one of known length goes through the server's write
// buffer of a few KiB. HTTP/1 requests are served full duplex (an app may
// answer while the upload still arrives). Upgrade requests (websockets)
// are tunnelled and counted in flight until the tunnel closes. Each
// backend has an http.Transport of its own, with keep-alive, so its pooled
// connections can be closed alone.
//
// Limits: an Upgrade over HTTP/2 (extended CONNECT) is not supported; the
// client's X-Forwarded-* headers are replaced, not extended (the proxy
// trusts no one in front of it); once a response has begun, a backend that
// fails can only abort it; when an app answers an HTTP/1 upload before it
// has read all of it, with a response of unknown length (chunked), the end
// of that response reaches the client only after the end of the upload.
package proxy

import (
	"container/list"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Options configures a Proxy. The zero value is valid: no queue, no request
// timeout, logging to slog.Default().
type Options struct {
	// QueueTimeout is how long a request waits for a ready backend when
	// none is; it is then answered 503 with Retry-After. Zero or negative:
	// a request finding no ready backend is answered 503 at once.
	QueueTimeout time.Duration
	// QueueLimit is the most requests that wait at once; one more is
	// answered 503 with Retry-After at once. Zero or negative: none wait.
	QueueLimit int
	// RequestTimeout bounds the wait for a backend's response header,
	// counted from the moment the request is forwarded (the upload's time
	// included). A request with no response header after this is answered
	// 504 and OnTimeout is called with the backend's id. A response whose
	// header has arrived (a long stream, an open tunnel) is never timed
	// out. Zero or negative: no timeout.
	RequestTimeout time.Duration
	// OnTimeout is called, in the goroutine of the request that timed out,
	// with the id of the backend that did not answer. It may be called
	// several times for one backend, concurrently, and should not block.
	OnTimeout func(id int)
	// OnUnreachable is called, once per backend, when a connection to it
	// cannot be dialed: nothing is routed to it from then on, and the
	// requests that could not reach it go to others. Usually the worker has
	// just died and Remove follows; a worker that still runs has closed
	// its listener and should be replaced. It is called in a request's
	// goroutine and should not block. Nil: only logged.
	OnUnreachable func(id int)
	// OnQueueWait, when set, is called once for each request that waited
	// in the queue, as the request ends, with how long it waited in all (a
	// request whose backend could not be dialed may queue again) and
	// whether it was forwarded (false: answered 503, or its client went
	// away). It is called in the request's goroutine and should not
	// block. A request that found a ready backend at once never waited.
	OnQueueWait func(wait time.Duration, forwarded bool)
	// Log receives the proxy's errors, each request's at most once, with
	// the backend's id. Nil means slog.Default().
	Log *slog.Logger
}

// A Proxy routes each request to the ready, non-draining backend with the
// fewest requests in flight (ties in turn), and queues requests while no
// backend is ready. It is an http.Handler; its methods are safe for
// concurrent use.
//
// A Proxy runs no goroutine of its own: requests run in the server's
// goroutines, and one mutex guards the set of backends and the queue.
type Proxy struct {
	opts Options
	log  *slog.Logger
	bufs *bufferPool

	mu       sync.Mutex
	backends []*backend // in order of Add; Remove takes one out
	next     int        // index where the next search starts: round robin among ties
	queue    list.List  // of *waiter, oldest first
	closed   bool

	// queued, if set (by tests), is called after a request joins the queue.
	queued func()
	// idleConnTimeout is that of the backends' Transports: idleConnTimeout,
	// or longer in tests that must see connections closed by a drain.
	idleConnTimeout time.Duration
}

// New returns a Proxy with no backends.
func New(opts Options) *Proxy {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	return &Proxy{opts: opts, log: log, bufs: newBufferPool(), idleConnTimeout: idleConnTimeout}
}

// ServeHTTP forwards r to a backend, waiting in the queue if none is ready.
//
// Answers of the proxy's own: 503 with Retry-After when no backend became
// ready within QueueTimeout, when the queue is full, or when the Proxy is
// closed and no backend is ready; 502 when the backend fails before its
// response header (its connection breaks); 504 after RequestTimeout. A
// response that has begun when the backend fails is aborted (the client
// sees its connection or stream reset), as net/http does for a handler.
//
// A request whose connection to the backend cannot be dialed has not
// reached it: it goes to another backend (or waits in the queue), and the
// backend is routed around from then on, as if drained, until Remove or
// Add replaces it. This covers the moment between a worker's death and
// the caller's Remove, when the dead worker, with nothing in flight, is
// the one with the fewest. A request already written to a connection is
// never sent to a second backend, even when the Transport resends an
// idempotent one: it may be what killed the first.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	duplex := fullDuplex(w, r)
	var wait queueWait // summed over the turns: a request may queue again after a dial failure
	// Each turn retires the backend that could not be dialed: the loop
	// ends, at the latest in the queue.
	for {
		b, err := p.acquire(r, &wait)
		if err != nil {
			p.reportWait(wait, false)
			p.refuse(w, r, err)
			return
		}
		if !b.forward(w, r) {
			p.reportWait(wait, true)
			if duplex {
				endDuplex(w, r)
			}
			return
		}
	}
}

// Stats returns the number of requests backend id has in flight (tunnels
// included) and the number of requests routed to it since Add. Both are
// zero for an id the Proxy does not know (never added, or removed).
func (p *Proxy) Stats(id int) (inFlight int, served uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.findLocked(id)
	if b == nil {
		return 0, 0
	}
	return b.ctl.InFlight(), b.served
}

// QueueLen returns the number of requests waiting in the queue for a
// ready backend.
func (p *Proxy) QueueLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// Close is for shutdown: requests waiting in the queue are answered 503 at
// once, and so are later requests that find no ready backend; the idle
// pooled connections of every backend are closed. Requests in flight go
// on, and a request that finds a ready backend is still forwarded, so that
// a Close racing the server's Shutdown loses nothing.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.wakeLocked()
	backends := append([]*backend(nil), p.backends...)
	p.mu.Unlock()
	for _, b := range backends {
		b.transport.CloseIdleConnections()
	}
}
