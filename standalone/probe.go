package standalone

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/drain"
)

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
		return nil, fmt.Errorf("standalone: Options.ProbeAddr is %q: %w; accepted: a TCP address such as \":8081\"", opts.ProbeAddr, err)
	}
	return ln, nil
}

// serveProbes serves ProbeHandler on ln until the returned function is
// called; that function closes the server and waits for it.
func serveProbes(c *drain.Controller, ln net.Listener, log *slog.Logger) (stop func()) {
	srv := &http.Server{
		Handler:           drain.ProbeHandler(c),
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
