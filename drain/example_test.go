package drain_test

import (
	"log"
	"net"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// A server drained exactly: Serve returns the moment the last request
// ends, or at the deadline. Anything may start the drain; here, a handler.
func Example() {
	c, err := drain.New(drain.Config{Timeout: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	c.OnDrain(func(r drain.Reason) { log.Printf("draining (%v): stop consumers, flush buffers", r) })

	mux := http.NewServeMux()
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		select { // long work ends early when the drain starts
		case <-time.After(time.Second):
		case <-drain.DrainingFromContext(r.Context()):
		}
		w.Write([]byte("done\n"))
	})
	mux.HandleFunc("/stop", func(w http.ResponseWriter, r *http.Request) {
		c.Start(drain.Manual) // a signal, a memory limit, a supervisor: any reason
	})

	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	res, err := drain.Serve(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, c, ln)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("drained in %v (%v), %d abandoned", res.Duration, res.Reason, res.Abandoned)
}

// Counting work that is not HTTP: a queue consumer. Acquire is lock-free
// and allocates nothing; it returns false once the drain has ended.
func ExampleController_Acquire() {
	c, err := drain.New(drain.Config{})
	if err != nil {
		log.Fatal(err)
	}
	jobs := make(chan func())
	go func() {
		for job := range jobs {
			if !c.Acquire() {
				return // drained: leave the job to another process
			}
			job()
			c.Release() // the last Release of a drain closes c.Done()
		}
	}()
	c.Start(drain.Signal)
	<-c.Done()
}
