package loadgen

import (
	"net"
	"sync"
	"time"
)

// lateConn is a client connection whose first Write after its first Read
// leaves delay late: the distance to a far client, modelled where it
// matters, so the server sees the same connection such a client opens.
type lateConn struct {
	net.Conn
	delay time.Duration

	mu        sync.Mutex
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
	due := c.flightDue
	c.flightDue = false
	c.mu.Unlock()
	if due {
		// The bytes are on their way: a Close meanwhile makes the Write
		// fail on the closed connection, as it would on a real one.
		t := time.NewTimer(c.delay)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
		}
	}
	return c.Conn.Write(p)
}

func (c *lateConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}
