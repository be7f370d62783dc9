package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/middleware"
)

// nopWriter is a ResponseWriter that costs nothing, so the benchmarks
// measure the handlers rather than a recorder.
type nopWriter struct{ header http.Header }

func (w *nopWriter) Header() http.Header         { return w.header }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

var bare = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

// request returns a request whose context carries c, as it does under
// drain.Serve and package cluster (through http.Server.BaseContext), or
// when the program sets BaseContext itself.
func request(c *drain.Controller) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	return r.WithContext(drain.NewContext(r.Context(), c))
}

func benchSerial(b *testing.B, h http.Handler, r *http.Request) {
	w := &nopWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func benchParallel(b *testing.B, h http.Handler, r *http.Request) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &nopWriter{header: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, r)
		}
	})
}

// BenchmarkMiddleware compares a bare handler with the same handler behind
// the middleware; the difference is the middleware's cost.
func BenchmarkMiddleware(b *testing.B) {
	c, _ := drain.New(drain.Config{})
	wrapped := middleware.New(c)(bare)
	plain := httptest.NewRequest(http.MethodGet, "/", nil)
	b.Run("bare/serial", func(b *testing.B) { benchSerial(b, bare, request(c)) })
	b.Run("middleware/serial", func(b *testing.B) { benchSerial(b, wrapped, request(c)) })
	b.Run("bare/parallel", func(b *testing.B) { benchParallel(b, bare, request(c)) })
	b.Run("middleware/parallel", func(b *testing.B) { benchParallel(b, wrapped, request(c)) })
	// Without the controller in the request's context, the middleware adds
	// it, which copies the request.
	b.Run("middleware-context-copy/serial", func(b *testing.B) { benchSerial(b, wrapped, plain) })
}
