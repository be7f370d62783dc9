package standalone_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"
	"github.com/memdrain/memdrain/standalone"
)

// One process under Kubernetes or systemd. It drains on SIGTERM or at
// 400 MiB; readiness on :8081/readyz turns 503 when the drain starts and
// liveness on :8081/livez stays 200 through it. The exit code is 75 after
// a drain on the memory limit (restart me), 0 after a signal. MEMDRAIN_*
// variables override the settings, with the cluster's parsing and errors.
func ExampleListenAndServe() {
	cfg, err := drain.ConfigFromEnv(drain.Config{Timeout: 25 * time.Second}) // below the platform's kill timeout
	if err != nil {
		log.Fatal(err)
	}
	opts, err := standalone.OptionsFromEnv(standalone.Options{
		Watch:     memory.Watch{Limit: 400 << 20},
		ProbeAddr: ":8081",
	})
	if err != nil {
		log.Fatal(err) // standalone: MEMDRAIN_CHECK_INTERVAL="250": a number without a unit; did you mean "250ms"? ...
	}
	c, err := drain.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: ":8080", Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second}
	res, err := standalone.ListenAndServe(context.Background(), srv, c, opts)
	if err != nil {
		log.Fatal(err)
	}
	os.Exit(res.ExitCode())
}
