// Package connpass moves accepted connections between servers: a
// duplicate of a connection's descriptor to send to another process, and a
// listener that accepts connections handed in as well as its own.
package connpass

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// FromFile turns a passed descriptor back into a connection that first
// yields buffered, the bytes the previous server had read from it. It
// takes ownership of f.
func FromFile(f *os.File, buffered []byte) (net.Conn, error) {
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("connpass: a passed descriptor is not a connection: %w", err)
	}
	if len(buffered) == 0 {
		return conn, nil
	}
	return &prefixConn{Conn: conn, prefix: buffered}, nil
}

// prefixConn reads prefix before the connection itself. It is read by one
// goroutine at a time, as net/http does.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite keeps net/http's lingering close for a passed connection.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Listener accepts connections from a listener and those handed in with
// Inject. It starts no goroutine of its own, so it never accepts a
// connection from the kernel's queue that its server will not serve: Inject
// wakes a blocked Accept with a deadline in the past instead.
type Listener struct {
	net.Listener
	deadliner interface{ SetDeadline(time.Time) error }
	orphan    func(net.Conn)

	mu      sync.Mutex
	queue   []net.Conn
	waiting bool // Accept is blocked in the wrapped listener
	closed  bool
}

// NewListener wraps ln, which must be a *net.TCPListener or a
// *net.UnixListener (they can be woken). Injected connections still queued
// when the listener closes are given to orphan.
func NewListener(ln net.Listener, orphan func(net.Conn)) (*Listener, error) {
	d, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return nil, fmt.Errorf("connpass: a %T cannot be woken to accept a passed connection; accepted: *net.TCPListener, *net.UnixListener", ln)
	}
	return &Listener{Listener: ln, deadliner: d, orphan: orphan}, nil
}

// ErrClosed is returned by Inject once the listener is closed: the caller
// still owns the connection.
var ErrClosed = errors.New("connpass: listener closed")

// Inject queues conn for the next Accept.
func (l *Listener) Inject(conn net.Conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.queue = append(l.queue, conn)
	if l.waiting {
		_ = l.deadliner.SetDeadline(aLongTimeAgo)
	}
	return nil
}

var aLongTimeAgo = time.Unix(1, 0)

// Accept returns the next connection, injected or accepted.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			conn := l.queue[0]
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return conn, nil
		}
		if l.closed {
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
		l.waiting = true
		l.mu.Unlock()

		conn, err := l.Listener.Accept()

		l.mu.Lock()
		l.waiting = false
		woken := err != nil && isTimeout(err) && !l.closed
		if woken {
			_ = l.deadliner.SetDeadline(time.Time{})
		}
		l.mu.Unlock()
		if !woken {
			return conn, err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close closes the wrapped listener, refuses further injections and gives
// the queued ones to orphan.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	queued := l.queue
	l.queue = nil
	l.mu.Unlock()
	err := l.Listener.Close()
	for _, conn := range queued {
		if l.orphan != nil {
			l.orphan(conn)
		} else {
			conn.Close()
		}
	}
	return err
}

// Detach returns a duplicate of conn's descriptor to pass to another
// process, and the bytes that process must read first: buffered (what this
// server read and did not consume), then whatever a connection handed in
// earlier still had queued. conn is left open.
func Detach(conn net.Conn, buffered []byte) (*os.File, []byte, error) {
	if pc, ok := conn.(*prefixConn); ok {
		buffered = append(append([]byte(nil), buffered...), pc.prefix...)
		conn = pc.Conn
	}
	f, err := Dup(conn)
	return f, buffered, err
}
