package cluster

import (
	"errors"
	"net"
	"os"
	"sync"

	"github.com/memdrain/memdrain/internal/connpass"
)

// Hand-offs: a draining worker passes its connections that carry no request
// to a serving worker, so that no client connection is closed by a
// recycle. Each worker has a datagram socket pair with the master, apart
// from the control channel: one datagram is one connection, its descriptor
// as SCM_RIGHTS, its payload the listener's index followed by the bytes the
// worker had read from it. The master's loop picks the serving worker that
// receives it.

// passedConn is one connection in transit: its descriptor and payload.
type passedConn struct {
	file    *os.File
	payload []byte // listener index, then the bytes already read
}

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
	mu   sync.Mutex
	conn *net.UnixConn
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
		index := int(pc.payload[0])
		conn, err := connpass.FromFile(pc.file, pc.payload[1:])
		if err != nil || index >= len(listeners) {
			if conn != nil {
				conn.Close()
			}
			continue
		}
		ln := listeners[index]
		if err := ln.Inject(conn); errors.Is(err, connpass.ErrClosed) {
			ln.returnConn(conn)
		}
	}
}

// returnQueued sends the connections still queued for this worker, which
// is about to exit, back to the master for another worker.
func returnQueued(in *net.UnixConn, listeners []*handoffListener) {
	for _, pc := range receiveQueued(in) {
		index := int(pc.payload[0])
		conn, err := connpass.FromFile(pc.file, pc.payload[1:])
		if err != nil {
			continue
		}
		if index >= len(listeners) {
			conn.Close()
			continue
		}
		listeners[index].returnConn(conn)
	}
}

// returnConn sends a connection this worker can no longer serve back to the
// master, and closes this worker's copy.
func (l *handoffListener) returnConn(conn net.Conn) {
	_ = l.out.send(l.index, conn, nil)
	conn.Close()
}

// The master's side.

// evHandoff is a connection a worker handed off, for the loop to route.
type evHandoff struct {
	from *proc
	conn passedConn
}

// receiveFrom posts every connection p hands off to the loop, until p's
// socket ends.
func (m *master) receiveFrom(p *proc) {
	for {
		pc, err := receiveConn(p.handoff)
		if err != nil {
			return
		}
		m.post(evHandoff{p, pc})
	}
}

// routeHandoff passes a connection to the serving worker with the fewest
// requests in flight, other than the one it came from. With none (every
// worker draining, at shutdown), the connection is closed, as a server
// closes an idle connection when it stops.
func (m *master) routeHandoff(ev evHandoff) {
	var to *proc
	for _, p := range m.procs {
		if p != ev.from && p.state == StateServing && (to == nil || p.inFlight < to.inFlight) {
			to = p
		}
	}
	if to == nil {
		ev.conn.file.Close()
		return
	}
	to.handoffs.push(ev.conn)
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
}

func newHandoffQueue() *handoffQueue { return &handoffQueue{wake: make(chan struct{}, 1)} }

func (q *handoffQueue) push(pc passedConn) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		pc.file.Close()
		return
	}
	q.conns = append(q.conns, pc)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// takeAll returns the connections not yet written, for another worker.
func (q *handoffQueue) takeAll() []passedConn {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	conns := q.conns
	q.conns = nil
	return conns
}

// close ends forward once the worker has exited; connections not yet
// written are closed.
func (q *handoffQueue) close() {
	if q == nil {
		return // a unit test's worker
	}
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// forward writes the queued connections to the worker's socket until the
// queue is closed.
func (q *handoffQueue) forward(to *net.UnixConn) {
	for range q.wake {
		q.mu.Lock()
		conns, closed := q.conns, q.closed
		q.conns = nil
		q.mu.Unlock()
		for _, pc := range conns {
			if !closed {
				_ = sendConn(to, pc)
			}
			pc.file.Close()
		}
		if closed {
			return
		}
	}
}
