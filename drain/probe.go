package drain

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ProbeHandler answers Kubernetes probes for c:
//   - GET /readyz answers 200 "ready" until the drain starts, and 503
//     "draining" from then on, so the pod leaves its Services while it
//     drains, whatever started the drain;
//   - GET /livez answers 200 "alive" while the process runs, draining
//     included, so the kubelet does not kill a process that is draining;
//   - any other path answers 404.
//
// Serve it on its own listener, one that stays open through the drain, as
// ListenAndServe's Options.ProbeAddr does: Serve closes the application's
// listeners when the drain starts, so a probe there is refused rather than
// answered 503, and a liveness probe there fails for the whole drain.
// Probe requests are not counted as work: they never hold the drain open.
func ProbeHandler(c *Controller) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if c.IsDraining() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "draining\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "alive\n")
	})
	return mux
}

// probeListener returns the listener for the probe server that opts asks
// for, or nil when it asks for none.
func probeListener(opts Options) (net.Listener, error) {
	if opts.ProbeListener != nil {
		return opts.ProbeListener, nil
	}
	if opts.ProbeAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", opts.ProbeAddr)
	if err != nil {
		return nil, fmt.Errorf("drain: Options.ProbeAddr is %q: %w; accepted: a TCP address such as \":8081\"", opts.ProbeAddr, err)
	}
	return ln, nil
}

// serveProbes serves ProbeHandler on ln until the returned function is
// called; that function closes the server and waits for it.
func serveProbes(c *Controller, ln net.Listener, log *slog.Logger) (stop func()) {
	srv := &http.Server{
		Handler:           ProbeHandler(c),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("probe server failed; readiness and liveness are no longer answered", "addr", ln.Addr().String(), "err", err)
		}
	}()
	log.Info("serving probes", "addr", ln.Addr().String(), "readiness", "/readyz", "liveness", "/livez")
	return func() {
		srv.Close()
		<-served
	}
}
