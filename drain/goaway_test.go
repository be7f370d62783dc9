package drain

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/gate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// h2Users is a closed-loop HTTP/2 load: every user has a transport, and so
// a connection, of its own, as a browser or a service's pool would, and
// sends one POST after another; every other user pauses up to pause
// between them, so that its connection is idle at most moments. A request
// is retried when Go's transport took a connection or wrote it more than
// once (counted with httptrace, as the benchmark harness does).
type h2Users struct {
	url   string
	tls   bool
	pause time.Duration

	requests, failed, retried atomic.Int64

	mu       sync.Mutex
	failures []string
	byServer map[string]int64 // requests served, by X-Served-By
	waiter   *servedWaiter    // the one waitServed in progress
}

// servedWaiter is a waitServed in progress.
type servedWaiter struct {
	name string
	n    int64
	done chan struct{}
}

func (u *h2Users) transport() *http.Transport {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	if u.tls {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return tr
}

// run drives n users until ctx ends.
func (u *h2Users) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := u.transport()
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: waitLimit}
			for ctx.Err() == nil {
				u.one(ctx, client)
				if i%2 == 1 && u.pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(rand.N(u.pause)):
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (u *h2Users) one(ctx context.Context, client *http.Client) {
	var conns, writes atomic.Int32
	trace := &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { conns.Add(1) },
		WroteRequest: func(httptrace.WroteRequestInfo) { writes.Add(1) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, u.url, strings.NewReader("memdrain"))
	if err != nil {
		panic(err) // a constant URL and method
	}
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil && ctx.Err() != nil {
		return // the load ended under this request
	}
	u.requests.Add(1)
	if conns.Load() > 1 || writes.Load() > 1 {
		u.retried.Add(1)
	}
	if err == nil && (resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2) {
		err = &protoError{resp.Proto, resp.Status}
	}
	if err != nil {
		u.failed.Add(1)
		u.mu.Lock()
		u.failures = append(u.failures, err.Error())
		u.mu.Unlock()
		return
	}
	name := resp.Header.Get("X-Served-By")
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byServer == nil {
		u.byServer = map[string]int64{}
	}
	u.byServer[name]++
	if w := u.waiter; w != nil && w.name == name && u.byServer[name] == w.n {
		close(w.done)
		u.waiter = nil
	}
}

// waitServed waits until server name has served n of the load's requests.
func (u *h2Users) waitServed(t *testing.T, name string, n int64) {
	t.Helper()
	w := &servedWaiter{name: name, n: n, done: make(chan struct{})}
	u.mu.Lock()
	if u.byServer[name] >= n {
		close(w.done)
	} else {
		u.waiter = w
	}
	u.mu.Unlock()
	waitClosed(t, w.done, fmt.Sprintf("%d requests served by %s", n, name))
}

type protoError struct{ proto, status string }

func (e *protoError) Error() string { return "unexpected " + e.proto + " " + e.status }

// TestServeHTTP2ClientsRetryNothingThroughADrain: HTTP/2 clients sending
// requests one after another on their connections, with pauses or not,
// while the drain starts, see no request refused or turned away, so Go's
// transport resends none. The drain sends GOAWAY in two steps (RFC 9113,
// 6.8), so that a stream the client opened while the first GOAWAY was on
// its way is still served, and sends the first one while the client waits
// for a response.
func TestServeHTTP2ClientsRetryNothingThroughADrain(t *testing.T) {
	const (
		users  = 48
		drains = 3
	)
	for _, mode := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"h2 over TLS", true}} {
		t.Run(mode.name, func(t *testing.T) {
			cert := selfSigned(t)
			configure := func(srv *http.Server) {
				srv.Protocols = new(http.Protocols)
				srv.Protocols.SetHTTP1(true)
				if mode.tls {
					srv.Protocols.SetHTTP2(true)
					srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				} else {
					srv.Protocols.SetUnencryptedHTTP2(true)
				}
			}
			ln := listen(t)
			scheme := "http"
			if mode.tls {
				scheme = "https"
			}
			load := &h2Users{url: scheme + "://" + ln.Addr().String(), tls: mode.tls, pause: 300 * time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			loaded := make(chan struct{})
			go func() {
				defer close(loaded)
				load.run(ctx, users)
			}()

			// Each drain hands the load from one server to the next on the
			// one socket, as a cluster's recycle does: the next one starts,
			// the current one drains while every user keeps sending.
			name := func(i int) string { return string(rune('a' + i)) }
			current := startServer(t, share(t, ln), time.Minute, tagged(name(0)), configure)
			for i := range drains {
				load.waitServed(t, name(i), 4*users)
				next := startServer(t, share(t, ln), time.Minute, tagged(name(i+1)), configure)
				current.c.Start(Manual)
				got := current.wait(t)
				require.NoError(t, got.err)
				assert.False(t, got.res.DeadlineExceeded, "drain %d", i)
				t.Logf("drain %d: %v", i, got.res.Duration)
				current = next
			}
			load.waitServed(t, name(drains), 4*users)
			cancel()
			<-loaded

			t.Logf("requests=%d failed=%d retried=%d", load.requests.Load(), load.failed.Load(), load.retried.Load())
			assert.Zero(t, load.failed.Load(), "failures: %v", load.failures)
			assert.Zero(t, load.retried.Load(), "requests resent by Go's transport")
		})
	}
}

// TestServeHTTP2GoesAwayInTwoSteps follows one connection's frames through
// the drain: GOAWAY naming the highest possible stream, a PING, and after
// its answer the server's own GOAWAY naming the last stream it took; a
// stream opened between the two is served. A busy connection gets the
// first GOAWAY just before its next response; an idle one before the
// response to its next request, or, its client quiet, a moment later.
func TestServeHTTP2GoesAwayInTwoSteps(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		for _, when := range []string{"busy", "idle, next request", "idle, quiet"} {
			name := map[bool]string{false: "h2c, ", true: "h2 over TLS, "}[overTLS] + when
			t.Run(name, func(t *testing.T) {
				cert := selfSigned(t)
				g := gate.New()
				ln := &closeWatcher{Listener: listen(t), closed: make(chan struct{})}
				var first atomic.Bool
				s := startServer(t, ln, time.Minute, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if when == "busy" && !first.Swap(true) {
						g.ServeHTTP(w, r)
						return
					}
					io.WriteString(w, "ok")
				}), func(srv *http.Server) {
					srv.Protocols = new(http.Protocols)
					srv.Protocols.SetHTTP2(true)
					srv.Protocols.SetUnencryptedHTTP2(true)
					if overTLS {
						srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
					}
				})
				r := dialRawH2(t, ln.Addr().String(), overTLS)
				r.get(1)
				if when == "busy" {
					g.WaitArrivals(t, 1, waitLimit)
				} else {
					r.response(1)
				}
				s.c.Start(Manual)
				// Serve closes its listeners once it has asked for the
				// GOAWAY: what the client sends from now on comes after.
				waitClosed(t, ln.closed, "the listener's close")
				switch when {
				case "busy":
					close(g.Open)
					r.twoStep(5, 1)
				case "idle, next request":
					r.get(3)
					r.twoStep(5, 3)
				default:
					r.twoStep(5)
				}
				r.conn.Close()
				got := s.wait(t)
				require.NoError(t, got.err)
				assert.False(t, got.res.DeadlineExceeded)
			})
		}
	}
}

// TestServeHTTP2GoesAwayToAClientThatAnswersNoPing: a client that does not
// answer PINGs (against RFC 9113) still gets the server's GOAWAY, later,
// and the drain still ends when it leaves.
func TestServeHTTP2GoesAwayToAClientThatAnswersNoPing(t *testing.T) {
	ln := listen(t)
	s := startServer(t, ln, time.Minute, tagged("a"), func(srv *http.Server) {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetUnencryptedHTTP2(true)
	})
	r := dialRawH2(t, ln.Addr().String(), false)
	r.get(1)
	r.response(1)
	s.c.Start(Manual)
	require.Equal(t, uint32(1<<31-1), goAwayOf(t, r.next()), "the first GOAWAY")
	require.Equal(t, byte(framePing), r.next().typ, "a PING follows the first GOAWAY")
	assert.Equal(t, uint32(1), goAwayOf(t, r.next()), "the server's GOAWAY, the PING unanswered")
	r.conn.Close()
	got := s.wait(t)
	require.NoError(t, got.err)
	assert.False(t, got.res.DeadlineExceeded)
}
