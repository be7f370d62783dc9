package drain

import (
	"io"
	"net/http"
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
