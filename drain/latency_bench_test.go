package drain

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkDrainLatency measures, for a set of requests of random length
// (0-2 s), the time from the completion of the last request to the return
// of the drain: memdrain's Serve against http.Server.Shutdown, on the same
// request set in every iteration. It reports percentiles over iterations
// and the ratio of Shutdown's to memdrain's. Run it with a fixed count:
//
//	go test -run '^$' -bench DrainLatency -benchtime 20x ./drain
func BenchmarkDrainLatency(b *testing.B) {
	const requests = 50
	const longest = 2 * time.Second
	var ours, theirs []time.Duration
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		lengths := make([]time.Duration, requests)
		for i := range lengths {
			lengths[i] = time.Duration(rng.Int64N(int64(longest)))
		}
		ours = append(ours, drainOnce(b, lengths, true))
		theirs = append(theirs, drainOnce(b, lengths, false))
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(ms(percentile(d, 0.50)), name+"-p50-ms")
		b.ReportMetric(ms(percentile(d, 0.99)), name+"-p99-ms")
		b.ReportMetric(ms(d[len(d)-1]), name+"-max-ms")
	}
	report("memdrain", ours)
	report("shutdown", theirs)
	b.ReportMetric(float64(percentile(theirs, 0.5))/float64(max(percentile(ours, 0.5), 1)), "shutdown/memdrain-p50")
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(int(p*float64(len(sorted))), len(sorted)-1)]
}

// drainOnce serves one request per entry of lengths, starts the drain once
// all have arrived, and returns the time from the last handler's return to
// the drain's return.
func drainOnce(b *testing.B, lengths []time.Duration, memdrain bool) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var last time.Time
	var arrived sync.WaitGroup
	arrived.Add(len(lengths))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d) // the request's work
		w.Write([]byte("ok"))
		mu.Lock()
		last = time.Now()
		mu.Unlock()
	})
	srv := &http.Server{Handler: handler}
	c := newController(b, time.Minute)
	returned := make(chan time.Time, 1)
	if memdrain {
		go func() {
			Serve(srv, c, ln)
			returned <- time.Now()
		}()
	} else {
		go srv.Serve(ln)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var clients sync.WaitGroup
	for _, d := range lengths {
		clients.Add(1)
		go func() {
			defer clients.Done()
			resp, err := client.Get("http://" + ln.Addr().String() + "/?d=" + d.String())
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	arrived.Wait()
	if memdrain {
		c.Start(Manual)
	} else {
		srv.Shutdown(context.Background())
		returned <- time.Now()
	}
	end := <-returned
	clients.Wait()
	mu.Lock()
	defer mu.Unlock()
	return end.Sub(last)
}
