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

	"github.com/memdrain/memdrain/internal/gate"
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

// recordingHandoff takes connections with up to max bytes read, and
// records what it was handed.
type recordingHandoff struct {
	max       int
	handedOff bool
	buffered  []byte
}

func (r *recordingHandoff) CanHandoff(n int) bool { return n <= r.max }
func (r *recordingHandoff) Handoff(_ net.Conn, buffered []byte) error {
	r.handedOff, r.buffered = true, buffered
	return nil
}

// raceAClaim has a request of size bytes reach the read that a claim is
// interrupting, and returns what the server's read got.
func raceAClaim(t *testing.T, h Handoff, request string) (tc *trackedConn, n int, err error) {
	t.Helper()
	conn := &heldConn{entered: make(chan struct{}), data: make(chan []byte)}
	tc = &trackedConn{Conn: conn, handoff: h, state: http.StateNew}
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
	conn.data <- []byte(request)
	r := <-got
	return tc, r.n, r.err
}

// TestARequestThatWinsTheRaceWithAClaimGoesWithTheConnection: bytes that
// reach a read the claim was interrupting are kept from the server and
// handed off with the connection, so a draining process serves nothing
// new: a process draining for memory would grow with every request.
func TestARequestThatWinsTheRaceWithAClaimGoesWithTheConnection(t *testing.T) {
	h := &recordingHandoff{max: 4096}
	request := "GET / HTTP/1.1\r\nCookie: " + strings.Repeat("a", 2000) + "\r\n\r\n"
	tc, n, err := raceAClaim(t, h, request)
	require.ErrorIs(t, err, errHandedOff, "the server lets go of the connection")
	assert.Zero(t, n, "the server reads none of the request")
	require.NoError(t, tc.Close())
	assert.True(t, h.handedOff)
	assert.Equal(t, request, string(h.buffered), "the request goes with the connection, whole")
}

// TestARequestTooBigForAHandoffIsServedHere: bytes that reach a read the
// claim was interrupting, more than the Handoff can pass on, go to this
// server: it must not lose them.
func TestARequestTooBigForAHandoffIsServedHere(t *testing.T) {
	h := &recordingHandoff{max: 1000}
	request := "GET / HTTP/1.1\r\nCookie: " + strings.Repeat("a", 2000) + "\r\n\r\n"
	tc, n, err := raceAClaim(t, h, request)
	require.NoError(t, err)
	assert.Equal(t, len(request), n, "the server reads the request")
	require.NoError(t, tc.Close())
	assert.False(t, h.handedOff, "the connection is not handed off with a request in it")
}

// TestAResponseWrittenByNetHTTPDuringTheDrainSaysConnectionClose: a
// handler that writes nothing still answers "Connection: close".
func TestAResponseWrittenByNetHTTPDuringTheDrainSaysConnectionClose(t *testing.T) {
	ln := listen(t)
	g := gate.New()
	mux := http.NewServeMux()
	mux.Handle("/hold", g)
	mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	s := startServer(t, ln, time.Minute, mux)
	held := make(chan error, 1)
	go func() {
		_, _, err := get(&http.Client{Transport: &http.Transport{}}, "http://"+ln.Addr().String()+"/hold")
		held <- err
	}()
	g.WaitArrivals(t, 1, waitLimit)
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return len(connsOf(s)) == 2 }, waitLimit, time.Millisecond)
	s.c.Start(Manual)
	resp := roundTrip(t, conn, "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.True(t, resp.Close, "the empty response carries Connection: close")
	close(g.Open)
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
