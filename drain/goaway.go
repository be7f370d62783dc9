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
// transport then resends the request on another connection. A client that
// sends one request at a time is safe while it waits for a response, so on
// a connection with a response still to come the first GOAWAY goes just
// before the next frame of a response (DATA or HEADERS). An idle
// connection's client may be anywhere, in that window too, so it is sent
// PINGs alone, one after the other, and the first GOAWAY goes out once
// idleProbes of them came back while the connection stayed idle. A client
// between two requests sends its next one within these round trips (in
// which its own goroutines run), and that request's response carries the
// GOAWAY; a client that sends nothing meanwhile is pausing, and gets it
// then.
//
// A PING left unanswered for pingPatience counts as answered, so that a
// client that does not answer PINGs (against RFC 9113, 6.7), or has stopped
// reading, still gets both GOAWAYs. That timer only sends them earlier than
// its answer would; it closes nothing, and the drain still ends with the
// last request and connection.

// idleProbes is how many PING round trips an idle connection stays idle
// before its first GOAWAY.
const idleProbes = 3

// pingPatience is how long a PING waits for its answer: net/http's own
// bound on a round trip after a GOAWAY (goAwayTimeout, 1 s).
const pingPatience = time.Second

// h2Conn is an HTTP/2 connection as the bundled server reads and writes it:
// it follows the frames both ways, puts the two-step's frames between two
// of the server's, and sees the client's PING answers. The server ignores
// an answer to a PING it did not send (processPing in net/http's
// h2_bundle.go).
type h2Conn struct {
	net.Conn          // what the server would have been given: the trackedConn (h2c) or the *tls.Conn
	key      net.Conn // the connection as http.Server's ConnState reports it
	final    func()   // makes the server send its own GOAWAY; see http2GoAway
	ping     [8]byte  // the data of the PING that follows the first GOAWAY
	probe    [8]byte  // the data of the PINGs alone, numbered in the last 4 bytes

	// preface: the client's preface is still to be read, here rather than
	// by the server (over TLS; for h2c net/http has read it). Used by the
	// server's reading goroutine only, like in.
	preface bool
	in      frameScanner // the client's frames

	wmu sync.Mutex   // held through every write: the server's and the two-step's
	out frameScanner // the server's frames; guarded by wmu

	mu       sync.Mutex
	asked    bool                // the drain started: send the two-step GOAWAY
	waiting  map[uint32]struct{} // streams whose response has not ended
	lastID   uint32              // the highest stream the client opened
	probes   uint32              // PINGs alone sent
	answered uint32              // the last of them answered
	idleFrom uint32              // probes when a stream last opened: those sent since count
	sent     bool                // the first GOAWAY and its PING went out
	acked    bool                // that PING was answered, and final called
	deaf     bool                // a PING went unanswered for pingPatience
	pings    uint32              // PINGs sent, alone or not
	patience *time.Timer         // for the last PING sent, while unanswered
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
	hc.probe = hc.ping
	hc.probe[0] ^= 0xff // never the GOAWAY's PING
	hc.in.onFrame = hc.clientFrame
	hc.out.onFrame = hc.serverFrame
	return hc
}

var clientPreface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

var errBadPreface = errors.New("drain: HTTP/2 client sent a bad preface")

// Read passes the client's frames to the server, and follows them. The
// server reads a frame's header, then its payload, and the next frame only
// after it has processed this one: when a PING answer's bytes are read,
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
// reset, and the answers to the PINGs.
func (hc *h2Conn) clientFrame(typ, flags byte, stream uint32, head []byte) {
	var final, send bool
	hc.mu.Lock()
	switch {
	case typ == frameHeaders && stream > hc.lastID:
		hc.lastID = stream
		hc.waiting[stream] = struct{}{}
		hc.idleFrom = hc.probes // the client is not pausing: count again
	case typ == frameRSTStream:
		delete(hc.waiting, stream)
		send = hc.idleLocked()
	case typ != framePing || flags&flagAck == 0 || len(head) != 8:
	case string(head) == string(hc.ping[:]):
		final = hc.sent && !hc.acked
		hc.acked = true
		hc.stopPatience()
	case string(head[:4]) == string(hc.probe[:4]) && binary.BigEndian.Uint32(head[4:]) == hc.probes:
		hc.answered = hc.probes
		if !hc.sent {
			hc.stopPatience() // the last PING sent
		}
		send = hc.idleLocked() // the next PING, or the GOAWAY
	}
	hc.mu.Unlock()
	if final {
		hc.final() // returns at once; the GOAWAY goes out from the server's loop
	}
	if send {
		go hc.sendIfIdle()
	}
}

// unanswered takes PING number seq as answered, if it is the last one
// sent: pingPatience passed without its answer.
func (hc *h2Conn) unanswered(seq uint32) {
	var final, send bool
	hc.mu.Lock()
	if seq != hc.pings || hc.patience == nil {
		hc.mu.Unlock()
		return // answered, or followed by another, as the timer fired
	}
	hc.patience = nil
	hc.deaf = true
	switch {
	case hc.sent:
		final = !hc.acked
		hc.acked = true
	case hc.answered != hc.probes:
		hc.answered = hc.probes
		send = hc.idleLocked()
	}
	hc.mu.Unlock()
	if final {
		hc.final()
	}
	if send {
		hc.sendIfIdle() // in the timer's own goroutine
	}
}

// stopPatience stops the timer of the last PING sent. Called with mu held.
func (hc *h2Conn) stopPatience() {
	if hc.patience != nil {
		hc.patience.Stop()
		hc.patience = nil
	}
}

// close stops the timer once the server is done with the connection.
func (hc *h2Conn) close() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.stopPatience()
}

// serverFrame sees each of the server's frames end: the ends of responses.
// Called with wmu held.
func (hc *h2Conn) serverFrame(typ, flags byte, stream uint32, _ []byte) {
	switch {
	case typ == frameRSTStream, (typ == frameData || typ == frameHeaders) && flags&flagEndStream != 0:
		hc.mu.Lock()
		delete(hc.waiting, stream)
		hc.mu.Unlock()
	}
}

// idleLocked reports whether the first GOAWAY is still wanted on a
// connection with no response to come. Called with mu held.
func (hc *h2Conn) idleLocked() bool {
	return hc.asked && !hc.sent && len(hc.waiting) == 0
}

// injection is what the two-step puts into the server's output.
type injection int

const (
	injectNothing injection = iota
	injectProbe             // a PING alone
	injectGoAway            // the first GOAWAY and its PING
)

// wanted reports whether the first GOAWAY is still to be sent.
func (hc *h2Conn) wanted() bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.asked && !hc.sent
}

// at says what goes before next, the header of the server's next frame
// (nil: unknown, or none yet).
func (hc *h2Conn) at(next []byte) injection {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	switch {
	case !hc.asked || hc.sent:
		return injectNothing
	case next != nil && (next[3] == frameData || next[3] == frameHeaders):
		return injectGoAway // a response's frame: its client is waiting for it
	case len(hc.waiting) > 0:
		return injectNothing
	case hc.deaf || int(hc.answered)-int(hc.idleFrom) >= idleProbes:
		return injectGoAway
	case hc.answered == hc.probes:
		return injectProbe
	}
	return injectNothing // a PING's answer is awaited
}

// Write passes the server's frames on, with the two-step's frames between
// two of them where they belong (see at).
func (hc *h2Conn) Write(p []byte) (int, error) {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if !hc.wanted() {
		hc.out.feed(p, nil)
		return hc.Conn.Write(p)
	}
	what := injectNothing
	at, found := hc.out.feed(p, func(next []byte) bool {
		if hc.canSend() {
			what = hc.at(next)
		}
		return what != injectNothing
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
	if err := hc.send(what); err != nil {
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

// send writes the injection's frames. Called with wmu held, where
// canSend.
func (hc *h2Conn) send(what injection) error {
	var frames []byte
	hc.mu.Lock()
	// Recorded even if the write fails: the connection is broken then.
	if what == injectGoAway {
		hc.sent = true
		frames = append(goAwayFrame(1<<31-1), pingFrame(hc.ping)...) // no stream refused
	} else {
		hc.probes++
		data := hc.probe
		binary.BigEndian.PutUint32(data[4:], hc.probes)
		frames = pingFrame(data)
	}
	hc.stopPatience()
	hc.pings++
	seq := hc.pings
	hc.patience = time.AfterFunc(pingPatience, func() { hc.unanswered(seq) })
	hc.mu.Unlock()
	_, err := hc.Conn.Write(frames)
	return err
}

// isAsked reports whether the drain asked for the two-step GOAWAY.
func (hc *h2Conn) isAsked() bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.asked
}

// goAway asks for the two-step GOAWAY.
func (hc *h2Conn) goAway() {
	hc.mu.Lock()
	first := !hc.asked
	hc.asked = true
	idle := hc.idleLocked()
	hc.mu.Unlock()
	if first && idle {
		go hc.sendIfIdle()
	}
}

// sendIfIdle sends what the two-step wants on an idle connection where
// the server's output stands, if frames may go there. Otherwise the
// server's next write sends it, or nothing does (see canSend). It runs in
// a goroutine of its own: a write may wait on the client.
func (hc *h2Conn) sendIfIdle() {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if !hc.canSend() {
		return
	}
	if what := hc.at(nil); what != injectNothing {
		_ = hc.send(what) // an error is the server's to see on its next write
	}
}
