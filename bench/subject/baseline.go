package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/leaky"
	"github.com/memdrain/memdrain/memory"
)

// The -baseline mode is "the usual approach" that the harness compares
// memdrain with: what uWSGI's reload-on-rss and gunicorn's
// max_requests do. The master does not watch memory (MaxMemory 0). Each
// worker watches its own RSS and, once over the limit, shuts itself down
// with http.Server.Shutdown and exits; the master sees an exit it did not
// ask for and respawns the worker. The replacement starts after the old
// worker has gone, not before.

// baselineConfig turns a memdrain cluster configuration into the
// baseline's: no memory recycling by the master, and a respawn as prompt as
// the cluster allows, forever.
func baselineConfig(cfg cluster.Config) cluster.Config {
	cfg.MaxMemory = 0
	cfg.BackoffMin = time.Millisecond
	cfg.BackoffMax = time.Millisecond
	cfg.CrashLimit = 1 << 30
	return cfg
}

// serveBaseline is a baseline worker: plain http.Server.Serve on every
// shared listener, its own memory watch, and Shutdown when over the limit
// (then the worker returns, and the program exits 0) or when the master
// asks it to drain (on stop).
func serveBaseline(w *cluster.Worker, limit uint64, interval time.Duration, out *eventlog.Writer) error {
	// No Go soft memory limit: the usual approach has none. (memdrain's
	// workers have one only until their live heap shows the growth is real.)
	srv, err := leaky.Server(leaky.Protocols{})
	if err != nil {
		return err
	}
	served := make(chan error, len(w.Listeners))
	for _, ln := range w.Listeners {
		go func() { served <- srv.Serve(ln) }()
	}
	w.Ready()

	// The watch reuses memory.Watch's pacing (the same Meter the master
	// uses for memdrain's workers), so both approaches see a crossing
	// equally soon; only what happens next differs.
	over, err := drain.New(drain.Config{Logger: w.Logger})
	if err != nil {
		return err
	}
	ctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go memory.Watch{Limit: limit, Interval: interval, Logger: w.Logger}.Run(ctx, over)

	var why drain.Reason
	select {
	case <-over.Draining():
		why = drain.Memory
	case <-w.Controller.Draining(): // the master is stopping, or went away
		why = w.Controller.Result().Reason
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	}
	if why == drain.Memory {
		rss, _ := memory.RSS.Sample(os.Getpid())
		now := time.Now()
		for _, kind := range []cluster.EventKind{cluster.OverLimit, cluster.Draining} {
			out.Write(eventlog.Event{Time: now, Kind: kind.String(), Source: "worker", Worker: w.ID, Pid: os.Getpid(), Reason: why.String(), Memory: rss})
		}
	}
	start := time.Now()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	w.Logger.Info("baseline worker shut down", "reason", why.String(), "took", time.Since(start), "err", err)
	out.Write(eventlog.Event{Time: time.Now(), Kind: eventlog.ShutDown, Source: "worker", Worker: w.ID, Pid: os.Getpid(), Reason: why.String(), DurationNS: int64(time.Since(start))})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
