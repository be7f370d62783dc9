package cluster_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/cluster"
)

// A cluster: cluster.Run re-executes this binary as the workers, which
// serve the shared socket; the master recycles a worker whose memory passes
// MaxMemory, fork-first, without losing a request. MEMDRAIN_* variables
// override the Config (MEMDRAIN_WORKERS=4, MEMDRAIN_MAX_MEMORY=1Gi).
func ExampleRun() {
	cfg, err := cluster.FromEnv(cluster.Config{Listen: []string{":8080"}, MaxMemory: 400 << 20})
	if err != nil {
		log.Fatal(err) // names the variable, its value and what is accepted
	}
	err = cluster.Run(cfg, func(w *cluster.Worker) error {
		// In each worker: warm up, then serve.
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "hello from worker %d\n", w.ID)
		})
		return w.Serve(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	})
	if err != nil {
		log.Fatal(err) // the master gave up: the process exits non-zero
	}
}

// HTTPS with HTTP/2: set the server's TLSConfig and pass Serve a plain
// listening address. Each worker does its own handshakes, negotiating h2 or
// http/1.1 by ALPN; a plain-HTTP client on the port is refused.
func ExampleWorker_Serve_tls() {
	cfg, err := cluster.FromEnv(cluster.Config{Listen: []string{":8443"}, MaxMemory: 400 << 20})
	if err != nil {
		log.Fatal(err)
	}
	err = cluster.Run(cfg, func(w *cluster.Worker) error {
		// Runs in each worker: load the certificate there (a worker that
		// fails here never replaces a serving one).
		cert, err := tls.LoadX509KeyPair("/etc/tls/server.crt", "/etc/tls/server.key")
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
			rw.Write([]byte(r.Proto + "\n")) // "HTTP/2.0" for h2 clients
		})
		return w.Serve(&http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		})
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A router under cluster.Run. The standard library's ServeMux here; chi,
// gorilla/mux or any other router works the same way, since each is an
// http.Handler given to the server that Worker.Serve serves.
//
// The code before cluster.Run runs in the master and again in every worker,
// since each worker re-executes this binary from main: keep it to reading
// configuration. Open databases, build the router and warm caches in the
// serve function, which runs in workers only. Workers write to the
// master's stdout and stderr.
func ExampleRun_router() {
	cfg, err := cluster.FromEnv(cluster.Config{Listen: []string{":8080"}, MaxMemory: 400 << 20})
	if err != nil {
		log.Fatal(err)
	}
	err = cluster.Run(cfg, func(w *cluster.Worker) error {
		mux := http.NewServeMux() // or r := chi.NewRouter()
		mux.HandleFunc("GET /users/{id}", func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "user %s, served by worker %d\n", r.PathValue("id"), w.ID)
		})
		return w.Serve(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A worker that serves the shared listeners with a server of its own
// wraps its handler with Worker.Handler, so that its requests count for
// Status and MaxRequests, and reports ready by hand. It must also stop
// when the drain starts.
func ExampleWorker_Handler() {
	cfg := cluster.Config{Listen: []string{":8080"}, MaxRequests: 100_000}
	err := cluster.Run(cfg, func(w *cluster.Worker) error {
		srv := &http.Server{Handler: w.Handler(http.NotFoundHandler()), ReadHeaderTimeout: 10 * time.Second}
		errs := make(chan error, len(w.Listeners))
		for _, ln := range w.Listeners {
			go func() { errs <- srv.Serve(ln) }()
		}
		w.Ready()
		<-w.Controller.Draining()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		for range w.Listeners {
			if serr := <-errs; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
		}
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}
