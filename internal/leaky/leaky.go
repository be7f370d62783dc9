// Package leaky is a deliberately leaking HTTP application: the workload of
// memdrain's example, tests and benchmarks.
package leaky

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Handler serves:
//
//	GET /work?ms=M&leak=K  waits M milliseconds without blocking other
//	                       requests, then retains K KiB forever, written so
//	                       that it counts in RSS; answers 200 "ok" with
//	                       header X-Worker-Pid
//	POST /work?ms=M&leak=K the same, after reading the body (a client that
//	                       Go's transport never retries silently)
//	GET /health            answers 200
//
// Bad parameters are answered 400, naming the parameter.
func Handler() http.Handler {
	var mu sync.Mutex
	var retained [][]byte
	pid := strconv.Itoa(os.Getpid())
	mux := http.NewServeMux()
	work := func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return // the client went away mid-body
		}
		ms, err := param(r, "ms", 0, 60_000)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		leak, err := param(r, "leak", 0, 1<<20)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if ms > 0 {
			timer := time.NewTimer(time.Duration(ms) * time.Millisecond)
			select {
			case <-timer.C:
			case <-r.Context().Done():
				timer.Stop()
				return
			}
		}
		if leak > 0 {
			b := make([]byte, leak<<10)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // touch every page, so it is resident
			}
			mu.Lock()
			retained = append(retained, b)
			mu.Unlock()
		}
		w.Header().Set("X-Worker-Pid", pid)
		w.Write([]byte("ok"))
	}
	mux.HandleFunc("GET /work", work)
	mux.HandleFunc("POST /work", work)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Pid", pid)
		w.Write([]byte("ok"))
	})
	return mux
}

func param(r *http.Request, name string, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("parameter %s=%q: accepted: a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}
