// Command subject is what the benchmark harness measures: a cluster of
// leaky workers (internal/leaky) that reports on stdout, as the JSON lines
// of package eventlog, every supervisor event and, every -status-every, a
// snapshot of every worker. It drives no load: the harness does.
//
// The cluster is configured only by the MEMDRAIN_* environment
// (cluster.FromEnv), as any program on memdrain may be. The flags choose
// what only the harness varies:
//
//	-baseline      the usual approach instead of memdrain's (baseline.go)
//	-status-every  how often to print the workers' status (0: never)
//	-tls, -h2c     HTTPS on a self-signed certificate; HTTP/2 in the clear
//
// The harness builds it from bench/ (go build ./subject) and stops it with
// SIGTERM, on which it drains its workers and exits.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/internal/leaky"
	"github.com/memdrain/memdrain/internal/tick"
)

type options struct {
	baseline    bool
	statusEvery time.Duration
	protocols   leaky.Protocols
}

func main() {
	var o options
	flag.BoolVar(&o.baseline, "baseline", false, "each worker shuts itself down (http.Server.Shutdown) over MEMDRAIN_MAX_MEMORY, and the master respawns it after it exited")
	flag.DurationVar(&o.statusEvery, "status-every", 0, "print every worker's status this often (0: never)")
	flag.BoolVar(&o.protocols.TLS, "tls", false, "serve HTTPS (HTTP/1.1 and h2 by ALPN) on a self-signed certificate for 127.0.0.1 and localhost")
	flag.BoolVar(&o.protocols.H2C, "h2c", false, "also serve HTTP/2 without TLS to clients that speak it with prior knowledge")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "subject:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.statusEvery < 0 {
		return fmt.Errorf("-status-every is %v; accepted: a positive duration, or 0 for never", o.statusEvery)
	}
	cfg, err := cluster.FromEnv(cluster.Config{})
	if err != nil {
		return err
	}
	limit := cfg.MaxMemory
	if o.baseline {
		if limit == 0 {
			return errors.New("-baseline needs MEMDRAIN_MAX_MEMORY: it is the limit the workers shut themselves down at")
		}
		cfg = baselineConfig(cfg)
	}
	out := eventlog.NewWriter(os.Stdout)
	cfg.OnEvent = func(e cluster.Event) { out.Write(eventlog.FromCluster(e)) }
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	c, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	if !c.IsMaster() {
		return c.Run(func(w *cluster.Worker) error {
			if o.baseline {
				return serveBaseline(w, limit, cfg.CheckInterval, out)
			}
			srv, err := leaky.Server(o.protocols)
			if err != nil {
				return err
			}
			return w.Serve(srv)
		})
	}
	stopStatus := func() {}
	if o.statusEvery > 0 {
		stopStatus = tick.Every(o.statusEvery, func() bool {
			out.Write(eventlog.Event{Time: time.Now(), Kind: eventlog.Status, Source: "master", Workers: c.Status()})
			return true
		})
	}
	err = c.Run(func(*cluster.Worker) error { return nil }) // until SIGTERM, or it gives up
	stopStatus()
	return err
}
