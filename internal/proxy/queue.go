package proxy

import (
	"container/list"
	"errors"
	"net/http"
	"time"
)

// The reasons a request is answered by the proxy itself, not a backend.
var (
	errQueueFull    = errors.New("no backend is ready and the queue is full")
	errQueueTimeout = errors.New("no backend became ready within the queue timeout")
	errClosed       = errors.New("the proxy is closed and no backend is ready")
)

// A waiter is a request in the queue. Whoever takes it out of the queue
// (wakeLocked, or the request itself when it gives up) clears queued under
// the Proxy's mutex; wakeLocked then sends it exactly one value.
type waiter struct {
	queued bool
	ch     chan *backend // buffered: a backend acquired for it, or nil when closed
}

// A queueWait is how long a request waited in the queue, over every time
// it joined it.
type queueWait struct {
	queued bool
	d      time.Duration
}

// reportWait tells OnQueueWait of a request's wait, if it waited.
func (p *Proxy) reportWait(w queueWait, forwarded bool) {
	if on := p.opts.OnQueueWait; on != nil && w.queued {
		on(w.d, forwarded)
	}
}

// acquire returns a backend with one request of r acquired on it, waiting
// in the queue if none is routable; the wait is added to wait.
func (p *Proxy) acquire(r *http.Request, wait *queueWait) (*backend, error) {
	p.mu.Lock()
	if b := p.pickLocked(); b != nil {
		p.mu.Unlock()
		return b, nil
	}
	switch {
	case p.closed:
		p.mu.Unlock()
		return nil, errClosed
	case p.queue.Len() >= p.opts.QueueLimit || p.opts.QueueTimeout <= 0:
		p.mu.Unlock()
		return nil, errQueueFull
	}
	w := &waiter{queued: true, ch: make(chan *backend, 1)}
	elem := p.queue.PushBack(w)
	hook := p.queued
	p.mu.Unlock()
	if hook != nil {
		hook()
	}

	start := time.Now()
	b, err := p.await(r, w, elem)
	wait.queued = true
	wait.d += time.Since(start)
	return b, err
}

// await waits for the queued request r, whose waiter is w at elem, to be
// handed a backend, or for its wait to end without one.
func (p *Proxy) await(r *http.Request, w *waiter, elem *list.Element) (*backend, error) {
	timer := time.NewTimer(p.opts.QueueTimeout)
	defer timer.Stop()
	var err error
	select {
	case b := <-w.ch:
		return woken(b)
	case <-timer.C:
		err = errQueueTimeout
	case <-r.Context().Done():
		err = r.Context().Err()
	}
	p.mu.Lock()
	if w.queued {
		w.queued = false
		p.queue.Remove(elem)
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	// A backend was handed over as the wait ended: it is acquired, use it.
	return woken(<-w.ch)
}

func woken(b *backend) (*backend, error) {
	if b == nil {
		return nil, errClosed
	}
	return b, nil
}

// wakeLocked hands the queued requests, oldest first, each a backend
// acquired for it, while one is routable; once the Proxy is closed it
// hands them nil, which they answer 503.
func (p *Proxy) wakeLocked() {
	for p.queue.Len() > 0 {
		var b *backend
		if !p.closed {
			if b = p.pickLocked(); b == nil {
				return
			}
		}
		w := p.queue.Remove(p.queue.Front()).(*waiter)
		w.queued = false
		w.ch <- b
	}
}

// refuse answers a request that no backend will serve.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client has gone, or half-closed its connection (net/http
		// cancels the request at its EOF): the answer is still written,
		// for the one that half-closed and still reads.
		p.log.Debug("request abandoned by its client in the queue", "method", r.Method, "path", r.URL.Path)
	} else {
		p.log.Warn("request refused: 503", "reason", err.Error(), "method", r.Method, "path", r.URL.Path)
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "503 Service Unavailable: "+err.Error(), http.StatusServiceUnavailable)
}
