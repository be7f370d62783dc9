package loadgen

import (
	"context"
	"net"
	"sync"
	"time"
)

// Delays model a client far away without network emulation: the client's
// bytes leave late, so the server sees exactly what a distant client
// causes, a connection that is open before its request (or its TLS
// handshake's second flight) arrives. A Write waits the longest of the
// delays that apply to it.
type Delays struct {
	// FirstWrite: the connection's first Write waits until this long after
	// the dial (a request written 150 ms after connect).
	FirstWrite time.Duration
	// SecondFlight: the first Write after the first Read waits this long
	// (a TLS client's Finished, sent after the server's first flight).
	SecondFlight time.Duration
	// EveryWrite: every Write waits this long (latency on every request).
	EveryWrite time.Duration
}

// Dialer returns a DialContext that dials with dial (net.Dialer's when
// nil) and applies d to every connection.
func (d Delays) Dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil || d == (Delays{}) {
			return c, err
		}
		return d.Wrap(c, time.Now(), nil), nil
	}
}

// Wrap returns c with d applied; dialed is when c was dialed. wait, if not
// nil, replaces the real wait (a test records the waits instead).
func (d Delays) Wrap(c net.Conn, dialed time.Time, wait func(time.Duration)) net.Conn {
	lc := &lateConn{Conn: c, d: d, dialed: dialed, wait: wait, closed: make(chan struct{})}
	if lc.wait == nil {
		lc.wait = lc.sleep
	}
	return lc
}

// lateConn is a client connection whose writes leave late, as its Delays
// say.
type lateConn struct {
	net.Conn
	d      Delays
	dialed time.Time
	wait   func(time.Duration)

	mu        sync.Mutex
	wrote     bool // a Write started
	read      bool // a Read returned data
	flightDue bool // the next Write is the first after the first Read

	closeOnce sync.Once
	closed    chan struct{}
}

func (c *lateConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if !c.read {
			c.read, c.flightDue = true, true
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *lateConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	d := c.d.EveryWrite
	if !c.wrote && c.d.FirstWrite > 0 {
		d = max(d, c.d.FirstWrite-time.Since(c.dialed))
	}
	if c.flightDue {
		c.flightDue = false
		d = max(d, c.d.SecondFlight)
	}
	c.wrote = true
	c.mu.Unlock()
	if d > 0 {
		c.wait(d)
	}
	return c.Conn.Write(p)
}

// sleep waits d, or until the connection is closed: the bytes are on their
// way, and a Close meanwhile makes the Write fail on the closed connection,
// as it would on a real one.
func (c *lateConn) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.closed:
	}
}

// Close closes the connection before it wakes a waiting Write, so that the
// Write fails on the closed connection rather than slip through.
func (c *lateConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}
