package main

import (
	"context"
	"net"
	"sync"
	"time"
)

// delays model a client far away without network emulation: the client's
// bytes leave late. The server sees exactly what a distant client causes:
// a connection that is open before its request (or its TLS handshake's
// second flight) arrives.
type delays struct {
	// FirstWrite: the connection's first Write waits until this long after
	// the dial (a request written 150 ms after connect).
	FirstWrite time.Duration
	// SecondFlight: the first Write after the first Read waits this long
	// (a TLS client's Finished, sent after the server's first flight).
	SecondFlight time.Duration
	// EveryWrite: every Write waits this long (latency on every request).
	EveryWrite time.Duration
}

func (d delays) zero() bool { return d == delays{} }

// dialer returns a DialContext that dials TCP and wraps the connection
// with d.
func (d delays) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil || d.zero() {
			return c, err
		}
		return d.wrap(c, time.Now(), nil), nil
	}
}

// wrap returns c with d applied. dialed is when c was dialed. wait, if
// not nil, replaces the real wait (the tests record the waits instead).
func (d delays) wrap(c net.Conn, dialed time.Time, wait func(time.Duration)) net.Conn {
	dc := &delayConn{Conn: c, d: d, dialed: dialed, wait: wait, closed: make(chan struct{})}
	if dc.wait == nil {
		dc.wait = dc.sleep
	}
	return dc
}

// delayConn is a net.Conn whose writes wait as its delays say.
type delayConn struct {
	net.Conn
	d      delays
	dialed time.Time
	wait   func(time.Duration)

	mu        sync.Mutex
	wrote     bool // a Write happened
	read      bool // a Read returned data
	flightDue bool // the next Write is the first after the first Read
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *delayConn) Read(p []byte) (int, error) {
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

func (c *delayConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	var d time.Duration
	if !c.wrote && c.d.FirstWrite > 0 {
		d = max(d, c.d.FirstWrite-time.Since(c.dialed))
	}
	if c.flightDue {
		c.flightDue = false
		d = max(d, c.d.SecondFlight)
	}
	d = max(d, c.d.EveryWrite)
	c.wrote = true
	c.mu.Unlock()
	if d > 0 {
		c.wait(d)
	}
	return c.Conn.Write(p)
}

// Close closes the connection before it wakes a waiting Write, so that
// the Write fails on the closed connection rather than slip through.
func (c *delayConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}

// sleep waits d, or until the connection is closed (then the Write fails
// on the closed connection, as it should).
func (c *delayConn) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.closed:
	}
}
