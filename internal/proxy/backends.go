package proxy

import (
	"math"
	"net"

	"github.com/memdrain/memdrain/drain"
)

// Add makes backend id (the worker's pid) routable at addr, a host:port on
// loopback, and hands the requests waiting in the queue to the backends
// that are then ready. An id already known is replaced: the old backend is
// removed as by Remove. An addr that is not host:port is logged and
// ignored.
func (p *Proxy) Add(id int, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.log.Error("backend not added: its address is not host:port", "backend", id, "addr", addr, "err", err)
		return
	}
	b := p.newBackend(id, addr)
	p.mu.Lock()
	old := p.removeLocked(id)
	p.backends = append(p.backends, b)
	p.wakeLocked()
	p.mu.Unlock()
	if old != nil {
		p.log.Warn("backend added again: the old one is removed", "backend", id, "old_addr", old.addr, "addr", addr)
		old.transport.CloseIdleConnections()
	}
}

// Drain stops routing requests to backend id and returns a channel that is
// closed at the moment its last request in flight ends (tunnels included),
// or at once if it has none. The idle pooled connections to the backend
// are closed right after, by the goroutine that ended the drain. The wait
// has no deadline: a caller bounds it (a tunnel may stay open for hours),
// then kills the worker and calls Remove. For an unknown id, the channel
// returned is already closed. Draining twice returns the same channel.
func (p *Proxy) Drain(id int) <-chan struct{} {
	p.mu.Lock()
	b := p.findLocked(id)
	if b != nil {
		b.retired = true
	}
	p.mu.Unlock()
	if b == nil {
		return closedChan
	}
	b.ctl.Start(drain.Supervisor)
	b.closeIdleIfDrained()
	return b.ctl.Done()
}

// Remove forgets backend id: it is gone (crashed, killed). Nothing more is
// routed to it and its idle pooled connections are closed; its requests in
// flight fail as their connections break and are answered 502 (or aborted,
// if their response had begun).
func (p *Proxy) Remove(id int) {
	p.mu.Lock()
	b := p.removeLocked(id)
	p.mu.Unlock()
	if b != nil {
		b.transport.CloseIdleConnections()
	}
}

// retire routes nothing more to b, and reports whether this call did it.
func (p *Proxy) retire(b *backend) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := b.retired
	b.retired = true
	return !was
}

// closedChan is what Drain returns when there is nothing to wait for.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (p *Proxy) findLocked(id int) *backend {
	for _, b := range p.backends {
		if b.id == id {
			return b
		}
	}
	return nil
}

// removeLocked takes backend id out of the list and returns it, or nil.
func (p *Proxy) removeLocked(id int) *backend {
	for i, b := range p.backends {
		if b.id != id {
			continue
		}
		b.retired = true
		p.backends = append(p.backends[:i], p.backends[i+1:]...)
		if p.next > i {
			p.next--
		}
		return b
	}
	return nil
}

// pickLocked returns the routable backend with the fewest requests in
// flight, the first one at or after p.next among equals, with one request
// acquired on it; nil if no backend is routable. Acquiring under the mutex
// that also guards retired means no request reaches a backend after Drain
// has marked it, and concurrent picks see each other's counts.
func (p *Proxy) pickLocked() *backend {
	n := len(p.backends)
	best, bestIdx, bestLoad := (*backend)(nil), 0, math.MaxInt
	for k := range n {
		i := (p.next + k) % n
		b := p.backends[i]
		if b.retired {
			continue
		}
		if load := b.ctl.InFlight(); load < bestLoad {
			best, bestIdx, bestLoad = b, i, load
		}
	}
	// Acquire fails only after a drain has ended, which Drain starts
	// after it retired the backend: never for a routable one.
	if best == nil || !best.ctl.Acquire() {
		return nil
	}
	best.served++
	p.next = (bestIdx + 1) % n
	return best
}
