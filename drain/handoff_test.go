//go:build linux || darwin

package drain

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/connpass"
	"github.com/memdrain/memdrain/internal/gate"
	"github.com/memdrain/memdrain/internal/selfsigned"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// distance models a client far away: the time between its connect (or its
// last response) and its request's arrival. It is part of the scenario, not
// a wait for the server.
const distance = 150 * time.Millisecond

// handingOff is a listener whose connections are handed, in this process,
// to another server's listener: what a cluster does across processes.
type handingOff struct {
	net.Listener
	to     *connpass.Listener
	passed chan struct{}
}

func (h *handingOff) CanHandoff(int) bool { return true }

func (h *handingOff) Handoff(conn net.Conn, buffered []byte) error {
	f, rest, err := connpass.Detach(conn, buffered)
	if err != nil {
		return err
	}
	passed, err := connpass.FromFile(f, rest)
	if err != nil {
		return err
	}
	if err := h.to.Inject(passed); err != nil {
		passed.Close()
		return err
	}
	h.passed <- struct{}{}
	return nil
}

// twoServers starts a, which hands its connections off, and b, which
// receives them and accepts nothing else.
func twoServers(t *testing.T) (a, b *server, addr string, passed chan struct{}) {
	t.Helper()
	lnA := listen(t)
	lnB, err := connpass.NewListener(listen(t), nil)
	require.NoError(t, err)
	passed = make(chan struct{}, 16)
	a = startServer(t, &handingOff{Listener: lnA, to: lnB, passed: passed}, time.Minute, tagged("a"))
	b = startServer(t, lnB, time.Minute, tagged("b"))
	return a, b, lnA.Addr().String(), passed
}

func waitPassed(t *testing.T, passed chan struct{}) {
	t.Helper()
	select {
	case <-passed:
	case <-time.After(waitLimit):
		t.Fatal("no connection was handed off")
	}
}

// TestServeHandsOffASilentConnection: a connection whose request has not
// arrived when the drain starts is passed on, and the drain ends without it.
func TestServeHandsOffASilentConnection(t *testing.T) {
	a, _, addr, passed := twoServers(t)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return len(connsOf(a)) == 1 }, waitLimit, time.Millisecond)

	a.c.Start(Memory)
	waitPassed(t, passed)
	got := a.wait(t)
	assert.False(t, got.res.DeadlineExceeded, "the drain ended when the silent connection was handed off")

	resp := roundTrip(t, conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.Equal(t, "b", resp.Header.Get("X-Served-By"))
	assert.False(t, resp.Close, "the client never learns of the recycle")
}

// TestServeLetsAHalfSentRequestFinish: a request arriving when the drain
// starts is read to its end and answered here, with "Connection: close".
func TestServeLetsAHalfSentRequestFinish(t *testing.T) {
	a, _, addr, _ := twoServers(t)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /half HTTP/1.1\r\nHo")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return pendingOf(a) == 22 }, waitLimit, time.Millisecond)

	a.c.Start(Memory)
	resp := roundTrip(t, conn, "st: x\r\n\r\n")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "a", resp.Header.Get("X-Served-By"))
	assert.True(t, resp.Close)
	assert.False(t, a.wait(t).res.DeadlineExceeded)
}

// TestServeHandsOffTheByteReadAheadOfTheNextRequest: net/http reads one
// byte ahead while a handler runs; that byte goes with the connection.
func TestServeHandsOffTheByteReadAheadOfTheNextRequest(t *testing.T) {
	lnA := listen(t)
	lnB, err := connpass.NewListener(listen(t), nil)
	require.NoError(t, err)
	passed := make(chan struct{}, 1)
	g := gate.New()
	a := startServer(t, &handingOff{Listener: lnA, to: lnB, passed: passed}, time.Minute, g)
	startServer(t, lnB, time.Minute, tagged("b"))

	conn, err := net.Dial("tcp", lnA.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	g.WaitArrivals(t, 1, waitLimit)
	_, err = io.WriteString(conn, "G") // the next request begins while the handler runs
	require.NoError(t, err)
	require.Eventually(t, func() bool { return pendingOf(a) == 1 }, waitLimit, time.Millisecond)
	close(g.Open)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Eventually(t, func() bool { return stateOf(a) == http.StateIdle }, waitLimit, time.Millisecond)

	a.c.Start(Memory)
	waitPassed(t, passed)
	resp = roundTrip(t, conn, "ET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "b", resp.Header.Get("X-Served-By"))
}

// TestServeHandsOffAKeptAliveConnection: the client's next request goes
// over the same connection, to the other server.
func TestServeHandsOffAKeptAliveConnection(t *testing.T) {
	a, _, addr, passed := twoServers(t)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, _, err := get(client, "http://"+addr)
	require.NoError(t, err)
	require.Equal(t, "a", resp.Header.Get("X-Served-By"))

	a.c.Start(Memory)
	waitPassed(t, passed)
	assert.False(t, a.wait(t).res.DeadlineExceeded)

	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, "http://"+addr, strings.NewReader("body"))
	require.NoError(t, err)
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.True(t, reused, "the same connection carried the next request")
	assert.Equal(t, "b", resp.Header.Get("X-Served-By"))
}

// TestServeKeepsASilentConnectionForItsLateRequest: with nobody to hand
// to, a connection whose request arrives late is kept, and the request is
// answered with "Connection: close". No timer closes it.
func TestServeKeepsASilentConnectionForItsLateRequest(t *testing.T) {
	ln := listen(t)
	s := startServer(t, ln, time.Minute, tagged("a"))
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return len(connsOf(s)) == 1 }, waitLimit, time.Millisecond)

	s.c.Start(Memory)
	time.Sleep(distance) // the request is on its way from far away
	assert.False(t, isClosed(s.c.Done()), "a connection whose request may be on its way holds the drain")
	resp := roundTrip(t, conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, resp.Close, "answered with Connection: close")
	assert.False(t, s.wait(t).res.DeadlineExceeded)
}

// TestServeClosesTheConnectionOfAnInFlightRequest: a request that began
// before the drain is answered with "Connection: close" too.
func TestServeClosesTheConnectionOfAnInFlightRequest(t *testing.T) {
	ln := listen(t)
	g := gate.New()
	s := startServer(t, ln, time.Minute, g)
	replied := make(chan *http.Response, 1)
	go func() {
		resp, _, err := get(&http.Client{Transport: &http.Transport{}}, "http://"+ln.Addr().String())
		if err != nil {
			t.Error(err)
		}
		replied <- resp
	}()
	g.WaitArrivals(t, 1, waitLimit)
	s.c.Start(Memory)
	close(g.Open)
	resp := <-replied
	require.NotNil(t, resp)
	assert.True(t, resp.Close, "the response written during the drain carries Connection: close")
	assert.False(t, s.wait(t).res.DeadlineExceeded)
}

// TestServeSendsGoAwayToAnIdleHTTP2Connection: an HTTP/2 connection with
// no stream open learns of the drain at once.
func TestServeSendsGoAwayToAnIdleHTTP2Connection(t *testing.T) {
	ln := listen(t)
	s := startServer(t, ln, time.Minute, tagged("a"), func(srv *http.Server) {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	})
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	// The client preface and an empty SETTINGS frame.
	_, err = conn.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0))
	require.NoError(t, err)
	frames := bufio.NewReader(conn)
	require.Equal(t, byte(4), readFrameType(t, frames), "the server's SETTINGS")
	require.Eventually(t, func() bool { return len(connsOf(s)) == 1 }, waitLimit, time.Millisecond)

	s.c.Start(Memory)
	for {
		typ := readFrameType(t, frames)
		if typ == 7 {
			break // GOAWAY
		}
	}
	conn.Close() // the client leaves, as told
	assert.False(t, s.wait(t).res.DeadlineExceeded)
}

// readFrameType reads one HTTP/2 frame and returns its type.
func readFrameType(t *testing.T, r *bufio.Reader) byte {
	t.Helper()
	var header [9]byte
	_, err := io.ReadFull(r, header[:])
	require.NoError(t, err, "the connection ended before a GOAWAY")
	length := int(binary.BigEndian.Uint32(append([]byte{0}, header[:3]...)))
	_, err = io.CopyN(io.Discard, r, int64(length))
	require.NoError(t, err)
	return header[3]
}

// TestServeServesTLSWhenTheServerHasATLSConfig: never plain HTTP on a
// port configured for HTTPS; HTTP/1.1 and HTTP/2 are negotiated.
func TestServeServesTLSWhenTheServerHasATLSConfig(t *testing.T) {
	ln := listen(t)
	cert := selfSigned(t)
	s := startServer(t, ln, time.Minute, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("a request reached the handler without TLS")
		}
		io.WriteString(w, r.Proto)
	}), func(srv *http.Server) { srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} })
	url := "https://" + ln.Addr().String()

	resp, body, err := get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+ln.Addr().String())
	if err == nil {
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP is refused: %s", body)
	}
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		_, body, err := get(&http.Client{Transport: tr}, url)
		require.NoError(t, err)
		want := "HTTP/1.1"
		if h2 {
			want = "HTTP/2.0"
		}
		assert.Equal(t, want, body)
		tr.CloseIdleConnections()
	}
	s.c.Start(Manual)
	assert.False(t, s.wait(t).res.DeadlineExceeded)
}

func TestServeRefusesATLSConfigWithoutACertificate(t *testing.T) {
	_, err := Serve(&http.Server{TLSConfig: &tls.Config{}}, newController(t, time.Minute), listen(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "srv.TLSConfig has no certificate")
}

func TestServeClosesItsListenersWhenTheDrainHadEnded(t *testing.T) {
	ln := listen(t)
	c := newController(t, time.Minute)
	c.Start(Manual)
	_, err := Serve(&http.Server{}, c, ln)
	require.NoError(t, err)
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}

// roundTrip writes raw to conn and reads one response.
func roundTrip(t *testing.T, conn net.Conn, raw string) *http.Response {
	t.Helper()
	_, err := io.WriteString(conn, raw)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var (
	trackersMu sync.Mutex
	trackers   = map[*Controller]*connTracker{}
)

func init() {
	testHookServe = func(t *connTracker) {
		trackersMu.Lock()
		defer trackersMu.Unlock()
		trackers[t.c] = t
	}
}

func trackerOf(s *server) *connTracker {
	trackersMu.Lock()
	defer trackersMu.Unlock()
	return trackers[s.c]
}

// connsOf returns the connections s's Serve tracks.
func connsOf(s *server) []*trackedConn {
	t := trackerOf(s)
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var conns []*trackedConn
	for _, tc := range t.open {
		conns = append(conns, tc)
	}
	return conns
}

// pendingOf returns how many bytes s's only connection has read unconsumed.
func pendingOf(s *server) int {
	conns := connsOf(s)
	if len(conns) != 1 {
		return -1
	}
	conns[0].mu.Lock()
	defer conns[0].mu.Unlock()
	return len(conns[0].pending)
}

// stateOf returns the state of s's only connection.
func stateOf(s *server) http.ConnState {
	conns := connsOf(s)
	if len(conns) != 1 {
		return -1
	}
	conns[0].mu.Lock()
	defer conns[0].mu.Unlock()
	return conns[0].state
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	cert, err := selfsigned.New()
	require.NoError(t, err)
	return cert
}
