package drain

import "net"

// Handoff is implemented by a listener whose connections another process
// can go on serving: the other workers of a cluster, which accept from the
// same socket. Serve checks each of its listeners for it.
//
// During a drain, Serve hands off every plain HTTP/1 connection accepted
// from such a listener as soon as it carries no request: one that was idle
// between requests, or new with no complete request yet. The client never
// notices: its next request (or the rest of the one it was sending) is read
// by the other process from the same socket. Without a Handoff, such a
// connection holds the drain open until its next request (answered with
// "Connection: close"), its client's close, or the drain deadline.
//
// Handoff receives the accepted connection itself (not the TLS or tracking
// layer above it) and the bytes Serve's server had already read from it
// that no request consumed, which the other process must read first. It
// must pass on a duplicate of the connection's descriptor (Serve closes its
// own copy when Handoff returns) and must not block for long: it runs on
// the connection's serving goroutine. If it returns an error, the
// connection is closed, as an idle connection closed by any server would
// be.
//
// TLS and HTTP/2 connections are never handed off: their state lives in
// the process. They are sent "Connection: close" or GOAWAY instead.
//
// CanHandoff is asked first, with the number of bytes of the next request
// read so far: zero to three when the connection is claimed, and more when
// the client's request arrives as the claim takes effect (those bytes are
// kept from the server and go with the connection). A listener says no to
// what it cannot pass on: too many bytes for its messages, or any bytes when
// its receiver would close the connection (at a shutdown). The connection is
// then kept and its request served here.
type Handoff interface {
	CanHandoff(buffered int) bool
	Handoff(conn net.Conn, buffered []byte) error
}
