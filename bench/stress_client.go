package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memdrain/memdrain/internal/loadgen"
)

// The stress scenarios' clients: HTTP/1.1 or HTTP/2, in the clear or over
// TLS, kept alive or a connection per request, with the distance of
// delays, pausing between requests. Every request is counted: failed by
// kind, and retried when Go's transport sent it more than once.

// attempts counts one request's tries by Go's transport. The transport
// takes a connection for every try (GotConn, which HTTP/2 reports
// itself too) and writes the request on it (WroteRequest, reported even
// when the write failed). A try that fails before it gets a connection is
// a dial error, returned to the caller, never retried; so a request with
// more than one of either was retried, silently: on a kept-alive
// connection the server closed (HTTP/1), or after a GOAWAY or
// REFUSED_STREAM (HTTP/2). Counting both covers a retry whose first try
// wrote nothing (the connection was found closed first) and one whose
// first connection was reported once but written twice.
type attempts struct{ got, wrote atomic.Int32 }

func (a *attempts) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { a.got.Add(1) },
		WroteRequest: func(httptrace.WroteRequestInfo) { a.wrote.Add(1) },
	}
}

func (a *attempts) retried() bool { return a.got.Load() > 1 || a.wrote.Load() > 1 }

// protocol is what a client speaks.
type protocol int

const (
	http1    protocol = iota // HTTP/1.1 in the clear
	http1TLS                 // HTTP/1.1 over TLS
	h2c                      // HTTP/2 in the clear, prior knowledge
	h2TLS                    // HTTP/2 over TLS (ALPN h2 only)
)

func (p protocol) scheme() string {
	if p == http1TLS || p == h2TLS {
		return "https"
	}
	return "http"
}

// clientSpec describes the clients of a load.
type clientSpec struct {
	proto     protocol
	keepAlive bool
	delays    delays
	timeout   time.Duration // of each request; zero means 10 s
}

// client returns a client for one closed-loop user: kept-alive clients
// get a transport of their own, so each user holds its own connection as
// a browser or a service's pool would.
func (s clientSpec) client() *http.Client {
	t := &http.Transport{
		DisableKeepAlives:   !s.keepAlive,
		MaxIdleConnsPerHost: 4,
		DialContext:         s.delays.Dialer(nil),
		// The workers' certificates are made up at their start, for
		// 127.0.0.1: there is nothing to verify them against.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Protocols:       new(http.Protocols),
	}
	switch s.proto {
	case http1, http1TLS:
		t.Protocols.SetHTTP1(true)
	case h2c:
		t.Protocols.SetUnencryptedHTTP2(true)
	case h2TLS:
		t.Protocols.SetHTTP2(true)
	}
	timeout := s.timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	return &http.Client{Transport: t, Timeout: timeout}
}

// outcome is one request's end.
type outcome struct {
	start, end time.Time
	failure    string // empty on success
	retried    bool
}

// send makes one request and reads the whole answer. A POST carries a
// small body, which Go's transport never retries on its own unless
// nothing of it was written.
func send(c *http.Client, method, url string) outcome {
	var a attempts
	o := outcome{start: time.Now()}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("memdrain stress")
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), a.trace()), method, url, body)
	if err == nil {
		var resp *http.Response
		resp, err = c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
				o.failure = "status " + resp.Status
			}
		}
	}
	o.end = time.Now()
	if err != nil {
		o.failure = failureKind(err)
	}
	o.retried = a.retried()
	return o
}

// failureKind is loadgen's kind of a transport error, without the method
// and URL that every "other" message would start with.
func failureKind(err error) string {
	kind := loadgen.Classify(err)
	var ue *url.Error
	if strings.HasPrefix(kind, "other: ") && errors.As(err, &ue) {
		return "other: " + ue.Err.Error()
	}
	return kind
}

// tally collects the outcomes of a scenario's load.
type tally struct {
	mu       sync.Mutex
	outcomes []outcome
}

func (t *tally) add(o outcome) {
	t.mu.Lock()
	t.outcomes = append(t.outcomes, o)
	t.mu.Unlock()
}

// totals counts the outcomes of requests that started in [from, to)
// (every request for zero times).
type totals struct {
	requests, failed, retried int
	failures                  map[string]int
}

func (t *tally) totals(from, to time.Time) totals {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := totals{failures: map[string]int{}}
	for _, o := range t.outcomes {
		if (!from.IsZero() && o.start.Before(from)) || (!to.IsZero() && !o.start.Before(to)) {
			continue
		}
		s.requests++
		if o.failure != "" {
			s.failed++
			s.failures[shortFailure(o.failure)]++
		}
		if o.retried {
			s.retried++
		}
	}
	return s
}

// shortFailure keeps failure kinds short enough for a table cell.
func shortFailure(f string) string {
	const most = 60
	if len(f) > most {
		return f[:most] + "…"
	}
	return f
}

// users is closed-loop load: each user sends a request, reads the answer,
// pauses a random time from 0 to pause, and again, until stop is closed.
// A request under way when stop closes is not cut: it ends on its own
// (within the client's timeout) and is counted.
type users struct {
	n      int
	spec   clientSpec
	method string
	url    string
	pause  time.Duration
}

// run starts the users and returns a function that waits for them all to
// end after stop closed.
func (u users) run(stop <-chan struct{}, t *tally) (wait func()) {
	var wg sync.WaitGroup
	var shared *http.Client
	if !u.spec.keepAlive {
		shared = u.spec.client() // no connection to keep: one transport will do
	}
	for range u.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := shared
			if c == nil {
				c = u.spec.client()
				defer c.CloseIdleConnections()
			}
			// Users start spread over one pause, as they would arrive.
			if !pauseFor(stop, u.pause) {
				return
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				t.add(send(c, u.method, u.url))
				if !pauseFor(stop, u.pause) {
					return
				}
			}
		}()
	}
	return func() {
		wg.Wait()
		if shared != nil {
			shared.CloseIdleConnections()
		}
	}
}

// pauseFor waits a random time from 0 to most, and reports false if stop
// closed first.
func pauseFor(stop <-chan struct{}, most time.Duration) bool {
	if most <= 0 {
		return true
	}
	timer := time.NewTimer(rand.N(most))
	defer timer.Stop()
	select {
	case <-stop:
		return false
	case <-timer.C:
		return true
	}
}

// paced is open-loop load at a set rate, for a leak of a set number of
// bytes a second: every 10 ms a tick hands out the requests due, and n
// users send them over their kept-alive connections. Requests due while
// every user is busy are dropped, and counted.
type paced struct {
	n       int
	spec    clientSpec
	url     string
	perSec  float64
	dropped atomic.Int64
	sent    atomic.Int64
}

func (p *paced) run(stop <-chan struct{}, t *tally) (wait func()) {
	due := make(chan struct{}, p.n)
	var wg sync.WaitGroup
	for range p.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.spec.client()
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				case <-due:
				}
				p.sent.Add(1)
				t.add(send(c, http.MethodGet, p.url))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		const tick = 10 * time.Millisecond
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		owed := 0.0
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			owed += p.perSec * tick.Seconds()
			for ; owed >= 1; owed-- {
				select {
				case due <- struct{}{}:
				default:
					p.dropped.Add(1)
				}
			}
		}
	}()
	return wg.Wait
}
