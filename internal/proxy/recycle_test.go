package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Backends recycled one after another under load from keep-alive clients,
// GET and POST: no request fails, every drain ends, and nothing is left in
// flight.
func TestRecycleUnderLoad(t *testing.T) {
	e := newEnv(t, Options{QueueTimeout: wait, QueueLimit: 64})
	const clients, requests, recycles = 8, 60, 6
	backends := []*testBackend{e.backend(1, "b1"), e.backend(2, "b2")}
	for _, b := range backends {
		e.p.Add(b.id, b.addr())
	}

	var wg sync.WaitGroup
	failures := make(chan string, clients*requests)
	started := make(chan struct{}, clients*requests)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range requests {
				req, _ := http.NewRequest("GET", e.front.URL+"/", nil)
				if i%2 == 1 {
					req, _ = http.NewRequest("POST", e.front.URL+"/count", strings.NewReader("payload"))
				}
				r := e.do(req)
				if r.err != nil || r.status != 200 {
					failures <- fmt.Sprintf("client %d request %d: status %d, err %v, body %q", c, i, r.status, r.err, r.body)
				}
				started <- struct{}{}
			}
		}()
	}

	// Recycle fork-first, as the command does, each time some requests
	// have gone through: add the replacement, drain the oldest, remove it.
	for k := range recycles {
		for range clients * requests / (recycles + 1) {
			recv(t, started, "load to go on")
		}
		next := e.backend(10+k, fmt.Sprintf("r%d", k))
		e.p.Add(next.id, next.addr())
		old := backends[0]
		backends = append(backends[1:], next)
		recv(t, e.p.Drain(old.id), fmt.Sprintf("the drain of %s", old.name))
		if n, _ := e.p.Stats(old.id); n != 0 {
			t.Fatalf("%s drained with %d in flight", old.name, n)
		}
		e.p.Remove(old.id)
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	var served uint64
	for _, b := range backends {
		n, s := e.p.Stats(b.id)
		if n != 0 {
			t.Errorf("%s has %d in flight after the load", b.name, n)
		}
		served += s
	}
	if served == 0 {
		t.Error("the last backends served nothing")
	}
}
