package metrics_test

import (
	"log"
	"net/http"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// A cluster serving its app on :8080, and its metrics on an admin
// listener of the master's own, on the loopback address. /metrics is
// served by the master, not on the app's port: only the master sees the
// events and the status of every worker, and a worker would answer with
// nothing of the cluster's.
func Example() {
	cfg, err := cluster.FromEnv(cluster.Config{Listen: []string{":8080"}, MaxMemory: 400 << 20})
	if err != nil {
		log.Fatal(err)
	}
	m := metrics.New(cfg)
	cfg.OnEvent = m.OnEvent(cfg.OnEvent) // before New: it sees every event
	c, err := cluster.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if c.IsMaster() { // this code runs in every worker too
		m.Watch(c)
		reg := prometheus.NewRegistry()
		reg.MustRegister(m)
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		admin := &http.Server{Addr: "127.0.0.1:9100", Handler: mux}
		go func() {
			if err := admin.ListenAndServe(); err != http.ErrServerClosed {
				log.Print("metrics: ", err)
			}
		}()
		defer admin.Close()
	}
	err = c.Run(func(w *cluster.Worker) error {
		return w.Serve(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("hello\n"))
		})})
	})
	if err != nil {
		log.Fatal(err)
	}
}
