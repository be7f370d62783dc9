//go:build linux

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkFrontMetrics measures what the front's metrics add to a
// request, in one run: a small GET served bare and instrumented, over a
// kept-alive loopback connection ("http") and with no connection at all
// ("handler", where the metrics' own cost is not hidden by the network's).
//
//	cd cmd/memdrain && go test -run '^$' -bench BenchmarkFrontMetrics -count 5 .
func BenchmarkFrontMetrics(b *testing.B) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, world\n")
	})
	for _, h := range []struct {
		name    string
		handler http.Handler
	}{
		{"bare", hello},
		{"instrumented", newFrontMetrics().instrument(hello)},
	} {
		b.Run("handler/"+h.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				h.handler.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
		b.Run("http/"+h.name, func(b *testing.B) {
			srv := httptest.NewServer(h.handler)
			defer srv.Close()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			for b.Loop() {
				res, err := client.Get(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
}
