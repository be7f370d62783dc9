// Package testkit holds the test helpers that several packages' tests
// share: a handler that holds requests until the test opens it, a handler
// that names its server, and bounded waits.
package testkit

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// A Gate holds each request it serves until Open is closed, then answers
// "done".
type Gate struct {
	Open    chan struct{}
	arrived chan struct{}
}

// New returns a closed gate that can hold up to 100 requests at once.
func New() *Gate { return &Gate{Open: make(chan struct{}), arrived: make(chan struct{}, 100)} }

func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.arrived <- struct{}{}
	<-g.Open
	io.WriteString(w, "done")
}

// WaitArrivals waits until n more requests have reached the gate, and fails
// the test if they have not within limit.
func (g *Gate) WaitArrivals(t testing.TB, n int, limit time.Duration) {
	t.Helper()
	for range n {
		select {
		case <-g.arrived:
		case <-time.After(limit):
			t.Fatalf("requests did not reach the handler within %v", limit)
		}
	}
}

// WaitLimit bounds every wait of a test on something that should happen.
const WaitLimit = 10 * time.Second

// Tagged answers "ok" with the header X-Served-By: name, so a test can
// tell which server answered.
func Tagged(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", name)
		io.WriteString(w, "ok")
	})
}

// Get sends a GET with client and returns the response and its whole body.
func Get(client *http.Client, url string) (*http.Response, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// WaitClosed fails the test unless ch closes within WaitLimit.
func WaitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(WaitLimit):
		t.Fatalf("%s did not happen within %v", what, WaitLimit)
	}
}

// IsClosed reports whether ch is closed, without waiting.
func IsClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
