// Command example is memdrain's demo: a cluster of two deliberately
// leaking HTTP workers on 127.0.0.1:8080, each recycled when its RSS
// passes 64 MiB, under a load the example drives against itself. It prints
// one status line a second and a line for each step of a recycle, and on
// Ctrl-C (or after -duration) a summary: requests, failed (0: recycling
// loses none), recycles, the highest memory seen against the limit.
//
//	go run ./example                  # watch it; Ctrl-C to stop
//	go run ./example -duration 30s    # stop by itself
//	go run ./example -load=false      # serve only; curl it yourself
//	MEMDRAIN_WORKERS=4 go run ./example
//
// Settings come from the flags given on the command line, then from the
// MEMDRAIN_* environment that cluster.FromEnv reads (README, "Settings"),
// then from the flags' defaults (config.go).
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
	"github.com/memdrain/memdrain/internal/tick"
	"github.com/memdrain/memdrain/memory"
)

type options struct {
	addr       string
	workers    int
	maxMemory  string
	duration   time.Duration
	load       bool
	clients    int
	leakKiB    int
	workMillis int
	verbose    bool
	tls        bool
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to serve on")
	flag.IntVar(&o.workers, "workers", 2, "worker processes")
	flag.StringVar(&o.maxMemory, "max-memory", "64Mi", "recycle a worker whose RSS passes this (400Mi, 1.5Gi, 512MB)")
	flag.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	flag.BoolVar(&o.load, "load", true, "drive a leaky load against the cluster")
	flag.IntVar(&o.clients, "clients", 4, "load clients: half keep connections alive, half open one per request")
	flag.IntVar(&o.leakKiB, "leak", 16, "KiB each request leaks")
	flag.IntVar(&o.workMillis, "ms", 5, "milliseconds each request works")
	flag.BoolVar(&o.verbose, "v", false, "log every supervisor decision")
	flag.BoolVar(&o.tls, "tls", false, "serve HTTPS (and h2) on a self-signed certificate made at start; with -load=false, then curl -k")
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
	if o.tls && o.load {
		return errors.New("-tls: the example's own load speaks plain HTTP; with -tls run it with -load=false and send HTTPS requests yourself (curl -k)")
	}
	level := slog.LevelError
	if o.verbose {
		level = slog.LevelInfo
	}
	limit, addr := cfg.MaxMemory, cfg.Listen[0]
	report := newReport(limit)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.OnEvent = report.event
	c, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	if !c.IsMaster() {
		return c.Run(func(w *cluster.Worker) error {
			srv, err := leaky.Server(leaky.Protocols{TLS: o.tls})
			if err != nil {
				return err
			}
			return w.Serve(srv)
		})
	}

	fmt.Printf("memdrain example: %d workers on http://%s, recycled at %s; Ctrl-C to stop\n", cfg.Workers, addr, memory.FormatSize(limit))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(caught)
	stopStatus := tick.Every(time.Second, func() bool { report.status(c); return true })
	var load sync.WaitGroup
	if o.load {
		url := "http://" + addr + "/work?ms=" + strconv.Itoa(o.workMillis) + "&leak=" + strconv.Itoa(o.leakKiB)
		for i, keepAlive := range []bool{true, false} {
			clients := o.clients / 2
			if i == 0 {
				clients = o.clients - clients
			}
			load.Add(1)
			go func() {
				defer load.Done()
				waitServing(ctx, "http://"+addr+"/health")
				loadgen.Run(ctx, loadgen.Config{URL: url, Clients: clients, KeepAlive: keepAlive, OnResponse: report.response})
			}()
		}
	}

	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(func(*cluster.Worker) error { return nil }) }()
	var timeout <-chan time.Time
	if o.duration > 0 {
		timeout = time.After(o.duration)
	}
	quiet := func() { stop(); load.Wait(); stopStatus() } // before the drains end, or the load counts refusals
	select {
	case err := <-stopped: // the master stopped on its own: it gave up
		quiet()
		return err
	case <-caught: // the cluster caught it too and is draining the workers
	case <-timeout:
		c.Stop()
	}
	quiet()
	err = <-stopped
	report.summary(os.Stdout)
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
