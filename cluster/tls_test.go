//go:build linux || darwin

package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/loadgen"
	"github.com/memdrain/memdrain/internal/selfsigned"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tlsCluster is a cluster whose workers serve HTTPS (servesTLS) with a
// certificate made up for the test, and a client configuration that trusts
// exactly that certificate.
type tlsCluster struct {
	*harness
	addr   string
	client *tls.Config
}

// startTLSCluster writes a self-signed certificate for 127.0.0.1 to a
// temporary directory, and starts a cluster whose workers serve with it.
func startTLSCluster(t *testing.T, cfg Config) *tlsCluster {
	t.Helper()
	certFile, keyFile, pool := writeSelfSigned(t)
	cfg.WorkerEnv = append(cfg.WorkerEnv, testTLSCert+"="+certFile, testTLSKey+"="+keyFile)
	h := startCluster(t, cfg, servesTLS)
	return &tlsCluster{
		harness: h,
		addr:    strings.TrimPrefix(h.url, "http://"),
		client:  &tls.Config{RootCAs: pool},
	}
}

func (c *tlsCluster) url(path string) string { return "https://" + c.addr + path }

// writeSelfSigned writes a certificate for 127.0.0.1 and its key as PEM
// files, and returns their paths and a pool holding the certificate.
func writeSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	cert, err := selfsigned.New()
	require.NoError(t, err)
	certPEM, keyPEM, err := selfsigned.PEM(cert)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	pool = x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return certFile, keyFile, pool
}

// TestAPlainHTTPClientIsRefusedOnTheTLSPort: a worker given a TLSConfig
// never serves plain HTTP; clients that trust its certificate get HTTP/1.1
// or HTTP/2, as they ask by ALPN.
func TestAPlainHTTPClientIsRefusedOnTheTLSPort(t *testing.T) {
	c := startTLSCluster(t, Config{Workers: 2})
	c.waitReady(2)

	h1 := &http.Transport{DisableKeepAlives: true}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	for _, tr := range []*http.Transport{h1, h2c} {
		plain := &http.Client{Transport: tr, Timeout: waitLimit}
		for range 8 { // both workers accept from the one socket
			resp, err := plain.Get("http://" + c.addr + "/health")
			if err != nil {
				continue // refused by the handshake: what must happen, in one of its forms
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain %s served on the TLS port: %s", resp.Proto, b)
			assert.Contains(t, string(b), "HTTP request to an HTTPS server")
		}
	}

	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: c.client.Clone(), Protocols: new(http.Protocols)}
		want := "HTTP/1.1"
		if h2 {
			tr.Protocols.SetHTTP2(true)
			want = "HTTP/2.0"
		} else {
			tr.Protocols.SetHTTP1(true)
		}
		resp, err := (&http.Client{Transport: tr, Timeout: waitLimit}).Get(c.url("/health"))
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, want, resp.Proto)
		require.NotNil(t, resp.TLS)
		assert.Equal(t, want == "HTTP/2.0", resp.TLS.NegotiatedProtocol == "h2", "ALPN chose %q", resp.TLS.NegotiatedProtocol)
	}
}

// TestTLSClientsLoseNoRequestThroughRecycles: kept-alive HTTP/1.1 and
// HTTP/2 clients over TLS, pausing between requests so that connections
// are idle at any moment, through several recycles. A draining worker's
// TLS connections are not handed off: its HTTP/1.1 clients are told
// "Connection: close" with their next response, its HTTP/2 clients get
// GOAWAY at once, and the drain waits for both rather than cut them. The
// drain timeout is far beyond the test's waits, so a drain that ended
// only at its deadline fails the test.
func TestTLSClientsLoseNoRequestThroughRecycles(t *testing.T) {
	const recycles = 4
	c := startTLSCluster(t, Config{Workers: 2, MaxRequests: 150, DrainTimeout: 10 * time.Minute})
	first := c.waitReady(2)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	type run struct {
		h2 bool
		loadgen.Result
	}
	var wrongProto atomic.Int64
	load := func(h2 bool, clients int, results chan<- run) {
		want := "HTTP/1.1"
		if h2 {
			want = "HTTP/2.0"
		}
		results <- run{h2, loadgen.Run(ctx, loadgen.Config{
			URL: c.url("/work?ms=2"), Clients: clients, KeepAlive: true, HTTP2: h2, TLS: c.client.Clone(),
			Pause: 200 * time.Millisecond,
			OnResponse: func(o loadgen.Outcome) {
				if o.Failure == "" && o.Proto != want {
					wrongProto.Add(1)
				}
			},
		})}
	}
	// HTTP/2 multiplexes a transport's clients over one connection: several
	// transports make several connections.
	const h2Transports = 3
	results := make(chan run, 1+h2Transports)
	go load(false, 8, results)
	for range h2Transports {
		go load(true, 3, results)
	}

	for planned := 0; planned < recycles; {
		e := c.waitFor("recycles by MaxRequests", func(e Event) bool {
			return e.Kind == ExitedPlanned || e.Kind == ExitedAccidental || e.Kind == Killed
		})
		require.Equal(t, ExitedPlanned, e.Kind, "pid %d: %v", e.Pid, e.Err)
		assert.Equal(t, drain.Requests, e.Reason)
		planned++
	}
	cancel()
	var h1, h2 loadgen.Result
	for range 1 + h2Transports {
		r := <-results
		assert.Zero(t, r.Failed, "HTTP/2 %v: %v", r.h2, r.Result)
		assert.Positive(t, r.Requests, "HTTP/2 %v", r.h2)
		sum := &h1
		if r.h2 {
			sum = &h2
		}
		sum.Requests += r.Requests
		sum.Failed += r.Failed
		sum.Retried += r.Retried
	}
	// Every response of a drain carries "Connection: close", and an idle
	// connection is kept until its next request: an HTTP/1.1 client never
	// sends on a connection the server closed, so nothing is retried.
	assert.Zero(t, h1.Retried, "HTTP/1.1 over TLS: %v", h1)
	// Streams a client opened while the GOAWAY was on its way are refused
	// unprocessed and resent on a new connection by Go's transport:
	// HTTP/2's own safe retry (RFC 9113, 6.8), counted, not a failure.
	t.Logf("%d recycles; HTTP/1.1 over TLS, kept alive: %v", recycles, h1)
	t.Logf("%d recycles; HTTP/2 over TLS, %d transports: %v", recycles, h2Transports, h2)
	assert.Zero(t, wrongProto.Load(), "responses in a protocol the client did not ask for")
	for _, s := range c.c.Status() {
		assert.NotContains(t, first, s.Pid, "every worker was recycled")
	}
}

// TestASlowTLSHandshakeLosesNoRequestThroughRecycles: clients whose
// handshake's second flight arrives 150 ms late (a client far away), a
// new connection for every request, so that handshakes are under way on
// the workers whenever a drain starts. Each handshake is finished and its
// request served by the worker that accepted it.
func TestASlowTLSHandshakeLosesNoRequestThroughRecycles(t *testing.T) {
	c := startTLSCluster(t, Config{Workers: 2, DrainTimeout: 10 * time.Minute})
	first := c.waitReady(2)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	served := make(chan struct{}, 1)
	var succeeded atomic.Int64
	result := make(chan loadgen.Result, 1)
	go func() {
		result <- loadgen.Run(ctx, loadgen.Config{
			URL: c.url("/work?ms=1"), Clients: 16, TLS: c.client.Clone(), SecondFlight: 150 * time.Millisecond,
			OnResponse: func(o loadgen.Outcome) {
				if o.Failure == "" && succeeded.Add(1) == 16 {
					served <- struct{}{}
				}
			},
		})
	}()
	select {
	case <-served: // the clients are through their first handshakes, the next ones under way
	case <-time.After(waitLimit):
		t.Fatal("no request served over the slow handshake")
	}

	const reloads = 2
	for range reloads {
		c.c.Reload()
		for planned := 0; planned < 2; {
			e := c.waitFor("the reload", func(e Event) bool {
				return e.Kind == ExitedPlanned || e.Kind == ExitedAccidental || e.Kind == Killed
			})
			require.Equal(t, ExitedPlanned, e.Kind, "pid %d: %v", e.Pid, e.Err)
			assert.Equal(t, drain.Reload, e.Reason)
			planned++
		}
	}
	cancel()
	r := <-result
	t.Logf("slow handshake, %d reloads of 2 workers: %v", reloads, r)
	assert.Zero(t, r.Failed, "%v", r)
	assert.Zero(t, r.Retried, "%v", r)
	assert.Positive(t, r.Requests)
	for _, s := range c.c.Status() {
		assert.NotContains(t, first, s.Pid, "every worker was replaced")
	}
}

// TestAnIdleTLSConnectionIsKeptUntilItsNextRequest: a kept-alive HTTP/1.1
// connection over TLS, idle when its worker's drain starts, is neither
// handed off (TLS state lives in the process) nor cut: its next request is
// answered, with "Connection: close", and only then does the drain end.
func TestAnIdleTLSConnectionIsKeptUntilItsNextRequest(t *testing.T) {
	c := startTLSCluster(t, Config{Workers: 1, DrainTimeout: 10 * time.Minute})
	old := c.waitReady(1)[0]

	cfg := c.client.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", c.addr, cfg)
	require.NoError(t, err)
	defer conn.Close()
	br := bufio.NewReader(conn)
	get := func() (*http.Response, error) {
		if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: memdrain\r\n\r\n"); err != nil {
			return nil, err
		}
		if err := conn.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, err
	}
	resp, err := get()
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(old), resp.Header.Get("X-Worker-Pid"))
	require.False(t, resp.Close)

	c.c.Reload()
	c.waitFor("the old worker's drain", func(e Event) bool { return e.Kind == Draining && e.Pid == old })
	// The client thinks between requests (its pause, not a wait for the
	// server), so the connection is idle when the worker's drain starts;
	// it asks again until the worker, which learns of its drain a moment
	// after the master, answers "Connection: close".
	const think = 300 * time.Millisecond
	for i := 0; ; i++ {
		require.Less(t, i, 100, "the draining worker never answered Connection: close")
		time.Sleep(think)
		resp, err := get()
		require.NoError(t, err, "the idle connection was cut by the drain")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, strconv.Itoa(old), resp.Header.Get("X-Worker-Pid"), "the same connection, the same worker")
		if resp.Close {
			break
		}
	}
	e := c.waitFor("the old worker's exit", func(e Event) bool {
		return e.Pid == old && (e.Kind == ExitedPlanned || e.Kind == Killed || e.Kind == ExitedAccidental)
	})
	assert.Equal(t, ExitedPlanned, e.Kind)
}

// TestAnIdleHTTP2TLSConnectionGetsGOAWAYWhenTheDrainStarts: an HTTP/2
// connection over TLS with no stream open is told GOAWAY as its worker's
// drain starts, rather than kept silent until the drain deadline.
func TestAnIdleHTTP2TLSConnectionGetsGOAWAYWhenTheDrainStarts(t *testing.T) {
	c := startTLSCluster(t, Config{Workers: 1, DrainTimeout: 10 * time.Minute})
	old := c.waitReady(1)[0]

	cfg := c.client.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", c.addr, cfg)
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
	// The client preface and an empty SETTINGS frame; no stream is opened.
	_, err = io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	kind, _ := readFrame(t, conn, br)
	require.Equal(t, byte(http2Settings), kind, "the server's preface")

	c.c.Reload()
	for {
		kind, payload := readFrame(t, conn, br)
		if kind != http2GoAway {
			continue // the server's SETTINGS acknowledgement, window updates
		}
		require.Len(t, payload, 8)
		assert.Zero(t, binary.BigEndian.Uint32(payload[4:]), "a graceful GOAWAY: NO_ERROR")
		break
	}
	conn.Close() // the client leaves, as Go's transport does after a GOAWAY
	e := c.waitFor("the old worker's exit", func(e Event) bool {
		return e.Pid == old && (e.Kind == ExitedPlanned || e.Kind == Killed || e.Kind == ExitedAccidental)
	})
	assert.Equal(t, ExitedPlanned, e.Kind)
}

// HTTP/2 frame types (RFC 9113, 6).
const (
	http2Settings = 0x4
	http2GoAway   = 0x7
)

// readFrame reads one HTTP/2 frame and returns its type and payload.
func readFrame(t *testing.T, conn net.Conn, r *bufio.Reader) (kind byte, payload []byte) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
	var header [9]byte
	_, err := io.ReadFull(r, header[:])
	require.NoError(t, err, "the connection ended before a GOAWAY")
	payload = make([]byte, int(header[0])<<16|int(header[1])<<8|int(header[2]))
	_, err = io.ReadFull(r, payload)
	require.NoError(t, err)
	return header[3], payload
}

// TestATLSListenerIsRefusedWithTheCallThatServesHTTPS: a tls.NewListener
// cannot be shared with worker processes (the TLS state would live in the
// master); the error says what serves HTTPS instead.
func TestATLSListenerIsRefusedWithTheCallThatServesHTTPS(t *testing.T) {
	ln := tls.NewListener(freeListener(t), &tls.Config{})
	err := Config{Listeners: []net.Listener{ln}}.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Config.Listeners[0]")
	assert.Contains(t, err.Error(), "TLSConfig")
	assert.Contains(t, err.Error(), "Worker.Serve")
}

// TestAReplacementWhoseTLSConfigHasNoCertificateNeverDrainsTheOldWorker: a
// deploy whose server has a TLSConfig without a certificate fails in
// Worker.Serve. It must fail before it reports ready, or the master drains
// the worker it replaces for a process that cannot serve.
func TestAReplacementWhoseTLSConfigHasNoCertificateNeverDrainsTheOldWorker(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t)
	cfg := Config{
		Workers: 1, CrashLimit: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		WorkerEnv: []string{testWorkerMarkerDir + "=" + t.TempDir(), testTLSCert + "=" + certFile, testTLSKey + "=" + keyFile},
	}
	h := startCluster(t, cfg, tlsCertOnlyFirst)
	old := h.waitReady(1)[0]

	h.c.Reload()
	h.waitKind(ReloadFailed)
	assert.Equal(t, 3, h.count(ExitedAccidental), "each replacement failed")
	assert.Equal(t, 1, h.count(Ready), "no replacement reported ready, only the old worker")
	assert.Zero(t, h.count(Draining), "the old worker was never drained")

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr, Timeout: waitLimit}).Get("https://" + strings.TrimPrefix(h.url, "http://") + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, strconv.Itoa(old), resp.Header.Get("X-Worker-Pid"), "the old worker serves on")
}
