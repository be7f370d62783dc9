// Package gate is a test handler that holds every request until the test
// opens it, and tells the test how many requests are waiting.
package gate

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
