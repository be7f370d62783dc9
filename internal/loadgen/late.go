package loadgen

import (
	"net"
	"sync"
	"time"
)

// lateConn is a client connection whose writes leave late: the distance to
// a far client, modelled where it matters, so the server sees the same
// connection such a client opens (open before its bytes arrive). Each
// Write waits the longest of the delays that apply to it.
type lateConn struct {
	net.Conn
	dialed       time.Time
	firstWrite   time.Duration // the first Write waits until this long after dialed
	secondFlight time.Duration // the first Write after the first Read waits this long
	everyWrite   time.Duration // every Write waits this long

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
	d := c.everyWrite
	if !c.wrote && c.firstWrite > 0 {
		d = max(d, c.firstWrite-time.Since(c.dialed))
	}
	if c.flightDue {
		c.flightDue = false
		d = max(d, c.secondFlight)
	}
	c.wrote = true
	c.mu.Unlock()
	if d > 0 {
		// The bytes are on their way: a Close meanwhile makes the Write
		// fail on the closed connection, as it would on a real one.
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
		}
	}
	return c.Conn.Write(p)
}

// Close closes the connection before it wakes a waiting Write, so that the
// Write fails on the closed connection rather than slip through.
func (c *lateConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}
