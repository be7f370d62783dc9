//go:build linux || darwin

package drain

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldConn is a connection whose reads wait for the test to send data; it
// says when a read has begun.
type heldConn struct {
	net.Conn
	entered chan struct{}
	data    chan []byte
}

func (c *heldConn) Read(p []byte) (int, error) {
	c.entered <- struct{}{}
	return copy(p, <-c.data), nil
}
func (c *heldConn) SetReadDeadline(time.Time) error { return nil }
func (c *heldConn) Close() error                    { return nil }

type recordingHandoff struct{ handedOff bool }

func (r *recordingHandoff) CanHandoff(int) bool { return true }
func (r *recordingHandoff) Handoff(net.Conn, []byte) error {
	r.handedOff = true
	return nil
}

// TestARequestThatWinsTheRaceWithAClaimIsServedHere: bytes that reach a
// read the claim was interrupting go to this server, not with the
// connection: a whole header would not fit in a hand-off, and the server
// must not lose it.
func TestARequestThatWinsTheRaceWithAClaimIsServedHere(t *testing.T) {
	conn := &heldConn{entered: make(chan struct{}), data: make(chan []byte)}
	h := &recordingHandoff{}
	tc := &trackedConn{Conn: conn, handoff: h, state: http.StateNew}
	type read struct {
		n   int
		err error
	}
	got := make(chan read, 1)
	go func() {
		n, err := tc.Read(make([]byte, 4096))
		got <- read{n, err}
	}()
	<-conn.entered
	tc.mu.Lock()
	tc.claim()
	claimed := tc.claimed
	tc.mu.Unlock()
	require.True(t, claimed)

	request := "GET / HTTP/1.1\r\nCookie: " + strings.Repeat("a", 2000) + "\r\n\r\n"
	conn.data <- []byte(request)
	r := <-got
	require.NoError(t, r.err)
	assert.Equal(t, len(request), r.n, "the server reads the request")
	require.NoError(t, tc.Close())
	assert.False(t, h.handedOff, "the connection is not handed off with a request in it")
}

// TestAResponseWrittenByNetHTTPDuringTheDrainSaysConnectionClose: a
// handler that writes nothing still answers "Connection: close".
func TestAResponseWrittenByNetHTTPDuringTheDrainSaysConnectionClose(t *testing.T) {
	ln := listen(t)
	g := newGate()
	mux := http.NewServeMux()
	mux.Handle("/hold", g)
	mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	s := startServer(t, ln, time.Minute, mux)
	held := make(chan error, 1)
	go func() {
		_, _, err := get(&http.Client{Transport: &http.Transport{}}, "http://"+ln.Addr().String()+"/hold")
		held <- err
	}()
	g.waitArrivals(t, 1)
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return len(connsOf(s)) == 2 }, waitLimit, time.Millisecond)
	s.c.Start(Manual)
	resp := roundTrip(t, conn, "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.True(t, resp.Close, "the empty response carries Connection: close")
	close(g.open)
	require.NoError(t, <-held)
}

// TestAnHTTP2ConnectionWhoseHandshakeEndsDuringTheDrainGetsGoAway: its
// handshake was under way when the drain's GOAWAY went out.
func TestAnHTTP2ConnectionWhoseHandshakeEndsDuringTheDrainGetsGoAway(t *testing.T) {
	ln := listen(t)
	cert := selfSigned(t)
	s := startServer(t, ln, time.Minute, tagged("a"), func(srv *http.Server) {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	raw, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	require.Eventually(t, func() bool { return len(connsOf(s)) == 1 }, waitLimit, time.Millisecond)
	s.c.Start(Manual)

	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	require.NoError(t, conn.Handshake())
	require.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
	_, err = conn.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
	frames := bufio.NewReader(conn)
	for readFrameType(t, frames) != 7 { // until GOAWAY
	}
	conn.Close()
	assert.False(t, s.wait(t).res.DeadlineExceeded)
}
