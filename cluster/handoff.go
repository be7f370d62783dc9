package cluster

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/connpass"
)

// Hand-offs: a draining worker passes its connections that carry no request
// to a serving worker, so that no client connection is closed by a
// recycle. Each worker has a datagram socket pair with the master, apart
// from the control channel: one datagram is one connection, its descriptor
// as SCM_RIGHTS, its payload the listener's index followed by the bytes the
// worker had read from it. The master's loop picks the serving worker that
// receives it, or parks it until one serves. No connection in transit is
// closed before shutdown: the master keeps a copy of each worker's end, so
// that when a worker exits it takes back whatever was queued for it (and
// whatever it returned as it exited) and routes it again.

// passedConn is one connection in transit: its descriptor and payload.
type passedConn struct {
	file    *os.File
	payload []byte // listener index (see returned), then the bytes already read
}

// returned marks, in a payload's first byte, a connection a worker sends
// back because it can no longer serve it: it started draining before the
// master knew. The master then hands that worker nothing more. The index
// takes the other seven bits (Validate allows at most maxListeners).
const returned = 0x80

// maxListeners is how many listening sockets a cluster may share.
const maxListeners = returned - 1

// The worker's side.

// handoffListener is one of a worker's shared listeners. drain.Serve hands
// its idle connections to the master through it during a drain, and it
// accepts the connections other workers handed off.
type handoffListener struct {
	*connpass.Listener
	index int
	out   *handoffOut
}

// handoffOut is the worker's end of its hand-off socket.
type handoffOut struct {
	mu    sync.Mutex
	conn  *net.UnixConn
	drain *drain.Controller // the worker's, set before it serves
}

// maxHandoffPayload bounds a datagram's payload: the listener's index and
// the bytes read. A connection is claimed with fewer than four bytes of a
// request read, but a request that arrives as the claim takes effect goes
// with it (see drain.Handoff): 8 KiB holds the server's whole read buffer
// (4 KiB), so such a request is handed off rather than served by the
// draining worker. CanHandoff refuses more; a longer datagram is dropped
// rather than cut (see receiveConn).
const maxHandoffPayload = 8 << 10

// CanHandoff implements drain.Handoff. The bytes must fit in one
// datagram. In a shutdown the master closes what it is handed (no worker
// is left to serve it), so only a connection with nothing of a request read
// may go: the rest are served here.
func (l *handoffListener) CanHandoff(buffered int) bool {
	if buffered == 0 {
		return true
	}
	if buffered >= maxHandoffPayload { // one byte of the payload is the listener's index
		return false
	}
	switch l.out.drain.Reason() {
	case drain.Signal, drain.Supervisor:
		return false
	}
	return true
}

// Handoff implements drain.Handoff: the master passes conn on to a serving
// worker.
func (l *handoffListener) Handoff(conn net.Conn, buffered []byte) error {
	return l.out.send(l.index, conn, buffered)
}

func (o *handoffOut) send(index int, conn net.Conn, buffered []byte) error {
	file, rest, err := connpass.Detach(conn, buffered)
	if err != nil {
		return err
	}
	defer file.Close() // the datagram carries its own reference
	o.mu.Lock()
	defer o.mu.Unlock()
	return sendConn(o.conn, passedConn{file: file, payload: append([]byte{byte(index)}, rest...)})
}

// openHandoffs opens a worker's inherited hand-off socket and its n
// shared listeners, and starts receiving the connections handed to it.
// closeAll returns whatever is still queued for the worker to the master,
// then closes everything; the worker calls it as it exits.
func openHandoffs(n int) (out *handoffOut, listeners []*handoffListener, closeAll func(), err error) {
	conn, err := inherited(handoffFD, "the master's hand-off socket", net.FileConn)
	if err != nil {
		return nil, nil, nil, err
	}
	unix, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, nil, nil, notInherited(handoffFD, "the master's hand-off socket")
	}
	out = &handoffOut{conn: unix}
	closeListeners := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	for i := range n {
		ln, err := inherited(firstListenerFD+i, "a listening socket", net.FileListener)
		if err == nil {
			hl := &handoffListener{index: i, out: out}
			if hl.Listener, err = connpass.NewListener(ln, hl.returnConn); err == nil {
				listeners = append(listeners, hl)
				continue
			}
			ln.Close()
		}
		closeListeners()
		unix.Close()
		return nil, nil, nil, err
	}
	received := make(chan struct{})
	go func() {
		defer close(received)
		receiveHandoffs(unix, listeners)
	}()
	return out, listeners, func() {
		closeListeners()
		// Nothing queued for this worker is lost: stop the receiver,
		// then send back what it had not read.
		unix.SetReadDeadline(aLongTimeAgo)
		<-received
		unix.SetReadDeadline(time.Time{})
		returnQueued(unix, listeners)
		unix.Close()
	}, nil
}

// receiveHandoffs injects the connections the master passes to this worker
// into their listeners until the socket fails: it ends, or the worker,
// about to exit, sets a deadline that makes it return what is queued
// without waiting. One that arrives after this worker started draining goes
// back to the master for another worker.
func receiveHandoffs(in *net.UnixConn, listeners []*handoffListener) {
	for {
		pc, err := receiveConn(in)
		if err != nil {
			return
		}
		ln, conn := accepting(listeners, pc)
		if conn == nil {
			continue
		}
		if err := ln.Inject(conn); errors.Is(err, connpass.ErrClosed) {
			ln.returnConn(conn)
		}
	}
}

// returnQueued sends the connections still queued for this worker, which
// is about to exit, back to the master for another worker.
func returnQueued(in *net.UnixConn, listeners []*handoffListener) {
	for _, pc := range receiveQueued(in) {
		if ln, conn := accepting(listeners, pc); conn != nil {
			ln.returnConn(conn)
		}
	}
}

// accepting turns a connection the master passed into a net.Conn, with the
// listener of its index. It returns a nil conn, and closes what it got,
// for one that cannot be served.
func accepting(listeners []*handoffListener, pc passedConn) (*handoffListener, net.Conn) {
	index := int(pc.payload[0])
	conn, err := connpass.FromFile(pc.file, pc.payload[1:])
	if err != nil {
		return nil, nil
	}
	if index >= len(listeners) {
		conn.Close()
		return nil, nil
	}
	return listeners[index], conn
}

// returnConn sends a connection this worker can no longer serve back to the
// master, and closes this worker's copy.
func (l *handoffListener) returnConn(conn net.Conn) {
	_ = l.out.send(l.index|returned, conn, nil)
	conn.Close()
}

// The master's side.

// evHandoff is a connection a worker handed off, for the loop to route.
type evHandoff struct {
	from *proc
	conn passedConn
}

// receiveFrom posts every connection p hands off to the loop, until p's
// socket fails: reclaimHandoffs sets a deadline once p has exited.
func (m *master) receiveFrom(p *proc) {
	defer close(p.received)
	for {
		pc, err := receiveConn(p.handoff)
		if err != nil {
			return
		}
		m.postHandoff(evHandoff{p, pc})
	}
}

// postHandoff posts a connection to the loop; once the loop has ended
// (Run returns) it closes it.
func (m *master) postHandoff(ev evHandoff) {
	select {
	case m.events <- ev:
	case <-m.done:
		ev.conn.file.Close()
	}
}

// reclaimHandoffs returns every connection still in transit to or from p,
// which has exited, for the loop to route to another worker: those p sent
// that the master has not read yet (it returns its queued ones as it
// exits), those routed to p that the forwarder had not written, and those
// written that p never read. The master keeps its copy of p's end of the
// socket open for this: a socket closed with datagrams queued would close
// their connections under their clients.
func (p *proc) reclaimHandoffs() []passedConn {
	p.handoff.SetReadDeadline(aLongTimeAgo) // ends receiveFrom, which posts what it read
	<-p.received
	p.handoff.SetReadDeadline(time.Time{})
	back := receiveQueued(p.handoff)
	back = append(back, p.handoffs.stop(p.handoff)...)
	back = append(back, receiveQueued(p.handoffPeer)...)
	p.handoff.Close()
	p.handoffPeer.Close()
	return back
}

var aLongTimeAgo = time.Unix(1, 0)

// routeHandoff passes a connection to the serving worker with the fewest
// requests in flight, other than the one it came from. With none (every
// worker draining or starting, after a crash or a hard-limit drain), it is
// parked until one serves: its client sees nothing, as a connection in the
// listen queue sees nothing. Once the master is shutting down, it is
// closed, as a server closes an idle connection when it stops.
func (m *master) routeHandoff(ev evHandoff) {
	if m.stopping {
		ev.conn.file.Close()
		return
	}
	if len(ev.conn.payload) > 0 && ev.conn.payload[0]&returned != 0 {
		ev.conn.payload[0] &^= returned
		if ev.from != nil {
			ev.from.refusesHandoffs = true
		}
	}
	for {
		var to *proc
		for _, p := range m.procs {
			if p != ev.from && p.state == StateServing && !p.refusesHandoffs && !p.handoffs.isClosed() && (to == nil || p.handoffLoad() < to.handoffLoad()) {
				to = p
			}
		}
		if to == nil {
			m.parked = append(m.parked, ev.conn)
			return
		}
		if to.handoffs.push(ev.conn) {
			to.handedTo++
			return
		}
	}
}

// handoffLoad is what routeHandoff balances: the requests p last reported
// in flight, plus the connections routed to it since. The report is up to
// a CheckInterval old, and a draining worker hands off all its idle
// connections at once: by the report alone they would all go to one
// worker.
func (p *proc) handoffLoad() int { return p.inFlight + p.handedTo }

// routeParked routes the parked connections once a worker serves, and
// closes them once the master is shutting down.
func (m *master) routeParked() {
	if len(m.parked) == 0 {
		return
	}
	parked := m.parked
	m.parked = nil
	for _, pc := range parked {
		m.routeHandoff(evHandoff{conn: pc})
	}
}

// rerouteHandoffs sends the connections queued for p, which stopped
// serving, to another worker.
func (m *master) rerouteHandoffs(p *proc) {
	for _, pc := range p.handoffs.takeAll() {
		m.routeHandoff(evHandoff{p, pc})
	}
}

// handoffQueue holds the connections routed to one worker until its
// forwarder has written them. It never blocks the loop and never drops a
// connection: a reload hands off thousands at once, and a datagram socket
// queues only a few (net.unix.max_dgram_qlen, 10 by default on Linux).
type handoffQueue struct {
	mu     sync.Mutex
	conns  []passedConn
	closed bool
	wake   chan struct{}
	done   chan struct{} // forward returned
}

func newHandoffQueue() *handoffQueue {
	return &handoffQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues pc, and reports false if the queue is closed: pc is still
// the caller's.
func (q *handoffQueue) push(pc passedConn) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.conns = append(q.conns, pc)
	q.mu.Unlock()
	q.poke()
	return true
}

func (q *handoffQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *handoffQueue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// takeAll returns the connections not yet written, for another worker.
func (q *handoffQueue) takeAll() []passedConn {
	q.mu.Lock()
	defer q.mu.Unlock()
	conns := q.conns
	q.conns = nil
	return conns
}

// close refuses further connections; those queued stay for stop.
func (q *handoffQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.poke()
}

// stop closes the queue, interrupts the forwarder's write on to, waits for
// it to return, and returns the connections it did not write.
func (q *handoffQueue) stop(to *net.UnixConn) []passedConn {
	q.close()
	to.SetWriteDeadline(aLongTimeAgo)
	<-q.done
	return q.takeAll()
}

// forward writes the queued connections to the worker's socket until the
// queue is closed. What it has not written when the queue closes stays
// queued, for stop. A connection the kernel refuses to carry while the
// worker lives goes to refused, for another worker.
func (q *handoffQueue) forward(to *net.UnixConn, refused func(passedConn)) {
	defer close(q.done)
	for range q.wake {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return
		}
		conns := q.conns
		q.conns = nil
		q.mu.Unlock()
		for i, pc := range conns {
			err := sendConn(to, pc)
			switch {
			case err == nil:
				pc.file.Close() // the datagram carries its own reference
			case q.isClosed():
				q.mu.Lock()
				q.conns = append(conns[i:len(conns):len(conns)], q.conns...)
				q.mu.Unlock()
				return
			default:
				refused(pc)
			}
		}
	}
}
