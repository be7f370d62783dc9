// Command example is memdrain's demo: a cluster of deliberately leaking
// HTTP workers on 127.0.0.1:8080, recycled as they pass their memory limit,
// under a load it drives against itself. It prints one status line a second
// and a line per recycle, and on Ctrl-C (or after -duration) a summary:
// requests, failed, recycles, the highest memory seen.
//
//	go run ./example                  # watch it; Ctrl-C to stop
//	go run ./example -duration 30s    # stop by itself
//	go run ./example -load=false      # serve only; curl it yourself
//	MEMDRAIN_WORKERS=4 go run ./example
//
// Settings come from the flags given on the command line, then from the
// MEMDRAIN_* environment that cluster.FromEnv reads (README, "Settings"),
// then from the flags' defaults: a flag given wins over its variable, and
// a variable with no flag here (MEMDRAIN_MAX_REQUESTS, say) applies too. A
// variable that cannot be used is an error, whether or not a flag
// overrides it.
//
// For the benchmark harness (bench/): -events-json prints every supervisor
// event, and a status snapshot every -status-every, as JSON lines on stdout
// instead of the human report; -baseline runs "the usual approach" instead
// of memdrain's recycling (see baseline.go).
//
// The workers serve GET /work?ms=M&leak=K (wait M ms, then keep K KiB
// forever) and GET /health; both answer with header X-Worker-Pid.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/internal/leaky"
	"github.com/memdrain/memdrain/internal/loadgen"
	"github.com/memdrain/memdrain/memory"
)

type options struct {
	addr          string
	workers       int
	maxMemory     string
	checkInterval time.Duration
	drainTimeout  time.Duration
	duration      time.Duration
	load          bool
	clients       int
	leakKiB       int
	workMillis    int
	verbose       bool
	eventsJSON    bool
	statusEvery   time.Duration
	baseline      bool
	protocols     protocolFlags
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to serve on")
	flag.IntVar(&o.workers, "workers", 2, "worker processes")
	flag.StringVar(&o.maxMemory, "max-memory", "64Mi", "recycle a worker whose RSS passes this (400Mi, 1.5Gi, 512MB)")
	flag.DurationVar(&o.checkInterval, "check-interval", time.Second, "longest time between two memory samples of a worker")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "deadline of a worker's drain")
	flag.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	flag.BoolVar(&o.load, "load", true, "drive a leaky load against the cluster")
	flag.IntVar(&o.clients, "clients", 4, "load clients: half keep connections alive, half open one per request")
	flag.IntVar(&o.leakKiB, "leak", 16, "KiB each request leaks")
	flag.IntVar(&o.workMillis, "ms", 5, "milliseconds each request works")
	flag.BoolVar(&o.verbose, "v", false, "log every supervisor decision")
	flag.BoolVar(&o.eventsJSON, "events-json", false, "print every supervisor event as a JSON line on stdout, instead of the human report")
	flag.DurationVar(&o.statusEvery, "status-every", 100*time.Millisecond, "with -events-json: print every worker's status this often (0: never)")
	flag.BoolVar(&o.baseline, "baseline", false, "the usual approach instead of memdrain's: each worker shuts itself down (http.Server.Shutdown) over -max-memory, and the master respawns it after it exited")
	o.protocols.register(flag.CommandLine)
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	limit, addr := cfg.MaxMemory, cfg.Listen[0]
	if o.statusEvery < 0 {
		return fmt.Errorf("-status-every is %v; accepted: a positive duration, or 0 for never", o.statusEvery)
	}
	if o.baseline && limit == 0 {
		return errors.New("-baseline needs a -max-memory limit: it is the limit the workers shut themselves down at")
	}
	if err := o.protocols.check(o.load); err != nil {
		return err
	}
	level := slog.LevelError
	if o.verbose {
		level = slog.LevelInfo
	}
	report := newReport(limit)
	var events *jsonLines
	onEvent := report.event
	if o.eventsJSON {
		events = &jsonLines{}
		onEvent = events.event
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.OnEvent = onEvent
	if o.baseline {
		cfg = baselineConfig(cfg)
	}
	c, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	if !c.IsMaster() {
		return c.Run(func(w *cluster.Worker) error {
			if o.baseline {
				return serveBaseline(w, limit, cfg.CheckInterval, events)
			}
			srv, err := o.protocols.server(leaky.Handler())
			if err != nil {
				return err
			}
			return w.Serve(srv)
		})
	}
	if !o.eventsJSON {
		fmt.Printf("memdrain example: %d workers on http://%s, recycled at %s; Ctrl-C to stop\n", cfg.Workers, addr, memory.FormatSize(limit))
	}
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(caught)

	var background sync.WaitGroup
	if o.load {
		url := "http://" + addr + "/work?ms=" + strconv.Itoa(o.workMillis) + "&leak=" + strconv.Itoa(o.leakKiB)
		for i, keepAlive := range []bool{true, false} {
			background.Add(1)
			go func() {
				defer background.Done()
				clients := o.clients / 2
				if i == 0 {
					clients = o.clients - clients
				}
				waitServing(ctx, "http://"+addr+"/health")
				loadgen.Run(ctx, loadgen.Config{URL: url, Clients: clients, KeepAlive: keepAlive, OnResponse: report.response})
			}()
		}
	}
	background.Add(1)
	go func() {
		defer background.Done()
		switch {
		case !o.eventsJSON:
			report.printEverySecond(ctx, c)
		case o.statusEvery > 0:
			events.statusEvery(ctx, c, o.statusEvery)
		}
	}()

	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(func(*cluster.Worker) error { return nil }) }()
	var timeout <-chan time.Time
	if o.duration > 0 {
		timeout = time.After(o.duration)
	}
	select {
	case err := <-runErr: // the master stopped on its own: it gave up
		stopLoad()
		background.Wait()
		return err
	case <-caught: // the cluster caught it too and is draining the workers
	case <-timeout:
		c.Stop()
	}
	stopLoad()
	background.Wait()
	err = <-runErr
	if !o.eventsJSON {
		report.summary(os.Stdout)
	}
	return err
}

// waitServing waits until the cluster answers, so the load does not count
// the master's start as failures.
func waitServing(ctx context.Context, url string) {
	client := &http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		if resp, err := client.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
