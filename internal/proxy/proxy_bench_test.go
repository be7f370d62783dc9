package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkProxy measures a small GET to the same backend directly and
// through the proxy, in one run, so the proxy's added cost reads as the
// ratio of the two. One client, keep-alive, on 127.0.0.1; "parallel" runs
// GOMAXPROCS clients at once.
//
//	go test -run '^$' -bench BenchmarkProxy -count 5 ./internal/proxy
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, world\n")
	}))
	defer backend.Close()
	p := New(Options{Log: slog.New(slog.DiscardHandler)})
	defer p.Close()
	p.Add(1, backend.Listener.Addr().String())
	front := httptest.NewServer(p)
	defer front.Close()

	for _, target := range []struct{ name, url string }{
		{"direct", backend.URL},
		{"proxied", front.URL},
	} {
		b.Run(target.name, func(b *testing.B) {
			client, done := benchClient()
			defer done()
			b.ReportAllocs()
			for b.Loop() {
				benchGet(b, client, target.url)
			}
		})
		b.Run(target.name+"/parallel", func(b *testing.B) {
			client, done := benchClient()
			defer done()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchGet(b, client, target.url)
				}
			})
		})
	}
}

func benchClient() (*http.Client, func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

func benchGet(b *testing.B, client *http.Client, url string) {
	res, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		b.Fatalf("status %d", res.StatusCode)
	}
}
