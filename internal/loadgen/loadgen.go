// Package loadgen drives closed-loop HTTP load at a server on this machine
// and classifies every outcome. memdrain's tests and benchmarks use it to
// prove that recycling loses no request: failures are counted by kind, and
// the requests that Go's transport silently retried are counted through
// net/http/httptrace.
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config describes one load run.
type Config struct {
	// URL is requested by every client.
	URL string
	// Method is GET (the default, "") or POST. A POST carries a small body
	// (PostBody): Go's transport never sends it again on its own once any
	// of it was written, so a connection cut under it is a failure, not a
	// silent retry.
	Method string
	// Clients is the number of concurrent closed-loop clients.
	Clients int
	// KeepAlive reuses connections; otherwise every request dials anew.
	KeepAlive bool
	// HTTP2 speaks HTTP/2: over TLS (negotiated by ALPN, HTTP/1.1 not
	// offered) when TLS is set, otherwise without TLS (h2c, prior
	// knowledge).
	HTTP2 bool
	// TLS is the clients' TLS configuration, for an https URL: set its
	// RootCAs to trust the server's certificate. Over TLS the clients
	// offer only HTTP/1.1 by ALPN, or only HTTP/2 with HTTP2. Go's
	// transport still speaks HTTP/1.1 to a server that does not choose h2:
	// Outcome.Proto says what was spoken.
	TLS *tls.Config
	// SecondFlight delays each connection's first Write after its first
	// Read by this long. Over TLS that is the client's second handshake
	// flight (its Finished): the handshake of a client far away, without
	// network emulation. The server sees what such a client causes: a
	// connection still in its handshake long after it was accepted.
	SecondFlight time.Duration
	// FirstWrite delays each connection's first Write until this long
	// after it was dialed: a request (or TLS ClientHello) that arrives
	// this long after the connection, from a client far away.
	FirstWrite time.Duration
	// EveryWrite delays every Write by this long: latency on every
	// request, so that a kept-alive connection's next request is on its
	// way while the server may see the connection idle.
	EveryWrite time.Duration
	// Pause is the most each client waits between requests: a random time
	// from 0 to Pause, so kept-alive connections are idle at any moment,
	// as a browser's or a service's are. Zero: no pause.
	Pause time.Duration
	// PerClient bounds the requests of each client; zero means until ctx ends.
	PerClient int
	// Timeout bounds each request; zero means 10 s.
	Timeout time.Duration
	// Header names a response header whose values are tallied in
	// Result.ByHeader (for example the serving process's pid).
	Header string
	// OnResponse, if set, is called after each request with its outcome.
	OnResponse func(Outcome)
}

// PostBody is the body of every POST.
const PostBody = "memdrain loadgen POST body"

// Outcome is one request's end.
type Outcome struct {
	Start, End time.Time
	Status     int    // 0 on a transport failure
	Failure    string // empty on success
	Retried    bool   // the transport sent the request more than once
	Header     string // the value of Config.Header
	Proto      string // the response's protocol, "HTTP/1.1" or "HTTP/2.0"
}

// Result totals a load run.
type Result struct {
	Requests int
	Failed   int
	Retried  int
	Failures map[string]int // by kind: refused, reset, eof, timeout, status 503, other: ...
	ByHeader map[string]int
}

// String summarises the result on one line.
func (r Result) String() string {
	return fmt.Sprintf("requests=%d failed=%d retried=%d failures=%v", r.Requests, r.Failed, r.Retried, r.Failures)
}

// Run drives the load until every client finished its PerClient requests or
// ctx ends, and returns the totals.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	transport := &http.Transport{
		DisableKeepAlives:   !cfg.KeepAlive,
		MaxIdleConnsPerHost: max(cfg.Clients, 2),
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		TLSClientConfig:     cfg.TLS,
	}
	switch {
	case cfg.HTTP2 && cfg.TLS != nil:
		transport.Protocols = new(http.Protocols)
		transport.Protocols.SetHTTP2(true)
	case cfg.HTTP2:
		transport.Protocols = new(http.Protocols)
		transport.Protocols.SetUnencryptedHTTP2(true)
	case cfg.TLS != nil:
		transport.Protocols = new(http.Protocols)
		transport.Protocols.SetHTTP1(true)
	}
	if d := (Delays{FirstWrite: cfg.FirstWrite, SecondFlight: cfg.SecondFlight, EveryWrite: cfg.EveryWrite}); d != (Delays{}) {
		transport.DialContext = d.Dialer(transport.DialContext)
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: cfg.Timeout}

	var mu sync.Mutex
	total := Result{Failures: map[string]int{}, ByHeader: map[string]int{}}
	var wg sync.WaitGroup
	for range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; cfg.PerClient == 0 || i < cfg.PerClient; i++ {
				if ctx.Err() != nil {
					return
				}
				o := do(ctx, client, cfg)
				if o.Failure == "canceled" {
					return // the run ended under this request; it is not a server's failure
				}
				mu.Lock()
				total.Requests++
				if o.Failure != "" {
					total.Failed++
					total.Failures[o.Failure]++
				}
				if o.Retried {
					total.Retried++
				}
				if cfg.Header != "" {
					total.ByHeader[o.Header]++
				}
				mu.Unlock()
				if cfg.OnResponse != nil {
					cfg.OnResponse(o)
				}
				if !pause(ctx, cfg.Pause) {
					return
				}
			}
		}()
	}
	wg.Wait()
	return total
}

// pause waits a random time from 0 to most, and reports false if ctx ended
// first.
func pause(ctx context.Context, most time.Duration) bool {
	if most <= 0 {
		return true
	}
	t := time.NewTimer(rand.N(most))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func do(ctx context.Context, client *http.Client, cfg Config) Outcome {
	// Every try takes a connection (GotConn, reported by HTTP/2 itself
	// too) and writes the request (WroteRequest, even when the write
	// failed): more than one of either is a retry by the transport.
	var conns, writes atomic.Int32
	trace := &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { conns.Add(1) },
		WroteRequest: func(httptrace.WroteRequestInfo) { writes.Add(1) },
	}
	o := Outcome{Start: time.Now()}
	var body io.Reader
	method := cfg.Method
	switch method {
	case "", http.MethodGet:
		method = http.MethodGet
	case http.MethodPost:
		body = strings.NewReader(PostBody)
	default:
		o.Failure = "other: loadgen: Config.Method " + strconv.Quote(cfg.Method) + " is not GET or POST"
		return o
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, cfg.URL, body)
	if err != nil {
		o.Failure = "other: " + err.Error()
		return o
	}
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.Status = resp.StatusCode
		o.Proto = resp.Proto
		if cfg.Header != "" {
			o.Header = resp.Header.Get(cfg.Header)
		}
	}
	o.End = time.Now()
	o.Retried = conns.Load() > 1 || writes.Load() > 1
	switch {
	case err != nil && ctx.Err() != nil:
		o.Failure = "canceled"
	case err != nil:
		o.Failure = Classify(err)
	case o.Status < 200 || o.Status > 299:
		o.Failure = fmt.Sprintf("status %d", o.Status)
	}
	return o
}

// Classify names the kind of a transport error: refused, reset, eof,
// timeout, or "other: " and the message.
func Classify(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	return "other: " + err.Error()
}
