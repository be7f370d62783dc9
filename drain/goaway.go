package drain

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// The two-step GOAWAY of RFC 9113, section 6.8, around net/http's bundled
// HTTP/2 server, which sends only one.
//
// The server's one GOAWAY names the highest stream it has seen. A stream
// the client opened while that GOAWAY was on its way is discarded, and the
// client must send its request again (Go's transport does, silently). So
// each HTTP/2 connection is served through an h2Conn, which, when the drain
// starts, puts two frames of its own into the server's output: GOAWAY with
// the highest possible stream id (no stream is refused; the client opens
// no new one) and a PING. The client answers the PING after it has read
// the GOAWAY, so once the answer arrives every stream it will ever open
// here has been read by the server, and the server's own GOAWAY, sent then
// (its Shutdown), refuses nothing.
//
// The first GOAWAY must also not reach a client between its picking the
// connection for a request and opening the request's stream: Go's
// transport then resends the request on another connection, and no frame
// the server sends can prevent it. A client that sends one request at a
// time is safe while it waits for a response, so the first GOAWAY goes
// just before the next frame of a response (DATA or HEADERS). An idle
// connection (no response to come) waits for its client's next request,
// whose response then carries it, or quietWait, after which its client is
// taken to be pausing, and is sent it.
//
// Two timers decide when a frame is sent; neither closes anything, and the
// drain still ends with its last request and connection. A PING left
// unanswered for pingPatience counts as answered, so that a client that
// does not answer PINGs (against RFC 9113, 6.7), or has stopped reading,
// still gets the server's GOAWAY.

const (
	// quietWait is how long an idle connection waits for its client's next
	// request before its first GOAWAY.
	quietWait = time.Second
	// pingPatience is how long a PING waits for its answer: net/http's own
	// bound on a round trip after a GOAWAY (goAwayTimeout, 1 s).
	pingPatience = time.Second
)

// h2Conn is an HTTP/2 connection as the bundled server reads and writes it:
// it follows the frames both ways, puts the two-step's frames between two
// of the server's, and sees the client's PING answer. The server ignores
// an answer to a PING it did not send (processPing in net/http's
// h2_bundle.go).
type h2Conn struct {
	net.Conn          // what the server would have been given: the trackedConn (h2c) or the *tls.Conn
	key      net.Conn // the connection as http.Server's ConnState reports it
	final    func()   // makes the server send its own GOAWAY; see http2GoAway
	ping     [8]byte  // the data of the PING that follows the first GOAWAY

	// preface: the client's preface is still to be read, here rather than
	// by the server (over TLS; for h2c net/http has read it). Used by the
	// server's reading goroutine only, like in.
	preface bool
	in      frameScanner // the client's frames

	wmu sync.Mutex   // held through every write: the server's and the two-step's
	out frameScanner // the server's frames; guarded by wmu

	mu      sync.Mutex
	asked   bool                // the drain started: send the two-step GOAWAY
	waiting map[uint32]struct{} // streams whose response has not ended
	lastID  uint32              // the highest stream the client opened
	quiet   bool                // idle for quietWait since asked: send the first GOAWAY
	sent    bool                // the first GOAWAY and its PING went out
	acked   bool                // that PING was answered (or not in time), and final called
	timer   *time.Timer         // quietWait, then pingPatience
	timers  uint32              // timers started: the current one's number
}

// h2TLSConn is an h2Conn over TLS. The server takes a connection with a
// ConnectionState for TLS: it checks the version and cipher suite as for a
// *tls.Conn, and fills Request.TLS.
type h2TLSConn struct {
	*h2Conn
	tls *tls.Conn
}

// ConnectionState is the TLS connection's.
func (c *h2TLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// h2ConnOf returns the h2Conn that conn is, or nil.
func h2ConnOf(conn net.Conn) *h2Conn {
	switch c := conn.(type) {
	case *h2Conn:
		return c
	case *h2TLSConn:
		return c.h2Conn
	}
	return nil
}

// newH2Conn wraps under, the connection an HTTP/2 server is about to
// serve. With readPreface, the client's preface has not been read yet.
func newH2Conn(under, key net.Conn, final func(), readPreface bool) *h2Conn {
	hc := &h2Conn{Conn: under, key: key, final: final, preface: readPreface, waiting: make(map[uint32]struct{})}
	binary.BigEndian.PutUint64(hc.ping[:], rand.Uint64())
	hc.in.onFrame = hc.clientFrame
	hc.out.onFrame = hc.serverFrame
	return hc
}

var clientPreface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

var errBadPreface = errors.New("drain: HTTP/2 client sent a bad preface")

// Read passes the client's frames to the server, and follows them. The
// server reads a frame's header, then its payload, and the next frame only
// after it has processed this one: when the PING answer's bytes are read,
// every stream the client opened before it has been seen.
func (hc *h2Conn) Read(p []byte) (int, error) {
	if hc.preface {
		// The server's own first-SETTINGS timer bounds this wait.
		var got [24]byte
		if _, err := io.ReadFull(hc.Conn, got[:]); err != nil {
			return 0, err
		}
		if string(got[:]) != string(clientPreface) {
			return 0, errBadPreface
		}
		hc.preface = false
	}
	n, err := hc.Conn.Read(p)
	hc.in.feed(p[:n], nil)
	return n, err
}

// clientFrame sees each of the client's frames end: streams opened and
// reset, and the answer to the PING.
func (hc *h2Conn) clientFrame(typ, flags byte, stream uint32, head []byte) {
	final := false
	hc.mu.Lock()
	switch {
	case typ == frameHeaders && stream > hc.lastID:
		hc.lastID = stream
		hc.waiting[stream] = struct{}{}
	case typ == frameRSTStream:
		delete(hc.waiting, stream)
		hc.idledLocked()
	case typ == framePing && flags&flagAck != 0 && string(head) == string(hc.ping[:]):
		final = hc.sent && !hc.acked
		hc.acked = true
		hc.stopTimer()
	}
	hc.mu.Unlock()
	if final {
		hc.final() // returns at once; the GOAWAY goes out from the server's loop
	}
}

// serverFrame sees each of the server's frames end: the ends of responses.
// Called with wmu held.
func (hc *h2Conn) serverFrame(typ, flags byte, stream uint32, _ []byte) {
	if typ == frameRSTStream || (typ == frameData || typ == frameHeaders) && flags&flagEndStream != 0 {
		hc.mu.Lock()
		delete(hc.waiting, stream)
		hc.idledLocked()
		hc.mu.Unlock()
	}
}

// idledLocked starts quietWait on a connection that has no response to
// come and still wants its first GOAWAY. Called with mu held.
func (hc *h2Conn) idledLocked() {
	if hc.asked && !hc.sent && !hc.quiet && hc.timer == nil && len(hc.waiting) == 0 {
		hc.startTimer(quietWait, hc.quietPassed)
	}
}

// quietPassed sends the first GOAWAY to a connection that stayed idle for
// quietWait: its client is pausing.
func (hc *h2Conn) quietPassed() {
	hc.mu.Lock()
	hc.quiet = true
	hc.mu.Unlock()
	hc.sendIfIdle()
}

// unanswered takes the PING as answered: pingPatience passed without its
// answer.
func (hc *h2Conn) unanswered() {
	hc.mu.Lock()
	final := !hc.acked
	hc.acked = true
	hc.mu.Unlock()
	if final {
		hc.final()
	}
}

// startTimer runs f in d, unless another timer is started or this one is
// stopped first. Called with mu held.
func (hc *h2Conn) startTimer(d time.Duration, f func()) {
	hc.stopTimer()
	hc.timers++
	n := hc.timers
	hc.timer = time.AfterFunc(d, func() {
		hc.mu.Lock()
		current := n == hc.timers && hc.timer != nil
		if current {
			hc.timer = nil
		}
		hc.mu.Unlock()
		if current {
			f()
		}
	})
}

// stopTimer stops the current timer. Called with mu held.
func (hc *h2Conn) stopTimer() {
	if hc.timer != nil {
		hc.timer.Stop()
		hc.timer = nil
	}
}

// close stops the timer once the server is done with the connection.
func (hc *h2Conn) close() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.stopTimer()
}

// wanted reports whether the first GOAWAY is still to be sent.
func (hc *h2Conn) wanted() bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.asked && !hc.sent
}

// goesBefore reports whether the first GOAWAY goes before next, the header
// of the server's next frame (nil: unknown, or none yet).
func (hc *h2Conn) goesBefore(next []byte) bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	switch {
	case !hc.asked || hc.sent:
		return false
	case next != nil && (next[3] == frameData || next[3] == frameHeaders):
		return true // a response's frame: its client is waiting for it
	}
	return hc.quiet && len(hc.waiting) == 0
}

// Write passes the server's frames on, with the first GOAWAY and its PING
// between two of them where they belong (see goesBefore).
func (hc *h2Conn) Write(p []byte) (int, error) {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if !hc.wanted() {
		hc.out.feed(p, nil)
		return hc.Conn.Write(p)
	}
	at, found := hc.out.feed(p, func(next []byte) bool {
		return hc.canSend() && hc.goesBefore(next)
	})
	if !found {
		return hc.Conn.Write(p)
	}
	n := 0
	if at > 0 {
		var err error
		if n, err = hc.Conn.Write(p[:at]); err != nil {
			return n, err
		}
	}
	if err := hc.send(); err != nil {
		return n, err
	}
	if at == len(p) {
		return n, nil
	}
	hc.out.feed(p[at:], nil)
	m, err := hc.Conn.Write(p[at:])
	return n + m, err
}

// canSend reports whether frames may go where the server's output stands:
// between two frames, after the server's first (its SETTINGS must come
// first), and never after a GOAWAY of the server's own, whose stream id
// the first GOAWAY would raise. Called with wmu held.
func (hc *h2Conn) canSend() bool {
	return hc.out.frames > 0 && hc.out.goAways == 0 && hc.out.between()
}

// send writes the first GOAWAY and its PING. Called with wmu held, where
// canSend.
func (hc *h2Conn) send() error {
	hc.mu.Lock()
	hc.sent = true // even if the write fails: the connection is broken then
	hc.startTimer(pingPatience, hc.unanswered)
	hc.mu.Unlock()
	_, err := hc.Conn.Write(append(goAwayFrame(1<<31-1), pingFrame(hc.ping)...)) // no stream refused
	return err
}

// goAway asks for the two-step GOAWAY: before the next response's frame,
// or once the connection stayed idle for quietWait.
func (hc *h2Conn) goAway() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if !hc.asked {
		hc.asked = true
		hc.idledLocked()
	}
}

// sendIfIdle sends the first GOAWAY and its PING, if they are still wanted
// on an idle connection and frames may go where the server's output
// stands. Otherwise the server's next write sends them, or nothing does
// (see canSend). A write may wait on the client: the caller is a goroutine
// of its own.
func (hc *h2Conn) sendIfIdle() {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if hc.canSend() && hc.goesBefore(nil) {
		_ = hc.send() // an error is the server's to see on its next write
	}
}
