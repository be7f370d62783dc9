// Package drainlatency measures how long a drain takes to return after its
// last request ended, with memdrain's drain.Serve or with
// http.Server.Shutdown. The drain package's benchmark and the benchmark
// harness both use it.
package drainlatency

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// Once serves one request per entry of lengths on 127.0.0.1, each lasting
// that long, starts the drain once all have arrived, and returns the time
// from the last handler's return to the drain's return: memdrain's
// drain.Serve when memdrain is true, http.Server.Shutdown otherwise.
func Once(lengths []time.Duration, memdrain bool) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
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
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	c, err := drain.New(drain.Config{Timeout: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		ln.Close()
		return 0, err
	}
	returned := make(chan time.Time, 1)
	if memdrain {
		go func() {
			drain.Serve(srv, c, ln)
			returned <- time.Now()
		}()
	} else {
		go srv.Serve(ln)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	var clients sync.WaitGroup
	failed := make(chan error, len(lengths))
	for _, d := range lengths {
		clients.Add(1)
		go func() {
			defer clients.Done()
			resp, err := client.Get("http://" + ln.Addr().String() + "/?d=" + d.String())
			if err != nil {
				failed <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	arrived.Wait()
	if memdrain {
		c.Start(drain.Manual)
	} else {
		srv.Shutdown(context.Background())
		returned <- time.Now()
	}
	end := <-returned
	clients.Wait()
	close(failed)
	if err := <-failed; err != nil {
		return 0, fmt.Errorf("a request failed during the drain: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return end.Sub(last), nil
}
