package cluster_test

import (
	"crypto/tls"
	"log"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/cluster"
)

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
