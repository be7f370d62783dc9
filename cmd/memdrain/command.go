//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/internal/listenaddr"
	"github.com/memdrain/memdrain/internal/proxy"
	"github.com/memdrain/memdrain/internal/systemd"
	"github.com/memdrain/memdrain/memory"
	"github.com/memdrain/memdrain/metrics"
)

// runCommand is memdrain run. Its exit code is 0 after a shutdown by
// SIGTERM or SIGINT, 2 for bad input, 1 when the supervisor gave up or
// memdrain could not start.
func runCommand(args []string) int {
	o, err := parseOptions(args, os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(os.Stdout, usageText())
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "memdrain: %v\n\n%s", err, usageText())
		return 2
	}
	if _, err := exec.LookPath(o.command[0]); err != nil {
		fmt.Fprintf(os.Stderr, "memdrain: the command %q cannot be run: %v\n", o.command[0], lookPathProblem(err))
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "memdrain: finding its own binary, which runs as each worker's shim: %v\n", err)
		return 1
	}
	log := newLogger(o.logFormat)

	// The pid file first: a second memdrain with the same file is told so,
	// not that its --listen address is in use.
	if o.pidFile != "" {
		pf, err := lockPidFile(o.pidFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "memdrain: %v\n", err)
			return 2
		}
		defer pf.remove()
	}
	listeners, err := listen(o, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memdrain: %v\n", err)
		return 2
	}
	var metricsLn net.Listener // nil without --metrics
	if o.metrics != "" {
		if metricsLn, err = listenaddr.Listen(o.metrics); err != nil {
			closeAll(listeners)
			fmt.Fprintf(os.Stderr, "memdrain: --metrics %s: %v\n", o.metrics, err)
			return 2
		}
	}
	l := newLauncher(o, exe, log)
	// The proxy's own log is its errors; the supervisor reports the drains.
	proxyLog := slog.New(newHandler(o.logFormat, slog.LevelWarn))
	// The metrics cost a counter and a histogram a request: they are kept
	// whether served or not, which keeps one path through the front.
	front := newFrontMetrics()
	p := proxy.New(proxy.Options{QueueTimeout: o.queueTimeout, QueueLimit: o.queueLimit, RequestTimeout: o.requestTimeout,
		OnTimeout: l.onTimeout, OnUnreachable: l.onUnreachable, OnQueueWait: front.queueWait, Log: proxyLog})
	defer p.Close()
	l.proxy = p

	cfg := o.cluster
	cfg.MaxMemory = containerMaxMemory(o, log)
	cfg.Launcher = l
	cfg.Logger = log
	base := cfg.Sampler
	if base == nil {
		base = memory.RSS
	}
	cfg.Sampler = treeSampler{base: base}
	sup := metrics.New(cfg)
	cfg.OnEvent = sup.OnEvent(cfg.OnEvent)
	c, err := cluster.New(cfg)
	if err != nil {
		closeAll(append(listeners, metricsLn))
		fmt.Fprintf(os.Stderr, "memdrain: %v\n", flagNames(err))
		return 2
	}
	sup.Watch(c)
	metricsAt := "" // where /metrics is served, for the log
	if metricsLn != nil {
		defer serveMetrics(metricsLn, sup, front, p, log)()
		metricsAt = "http://" + metricsLn.Addr().String() + "/metrics"
		if metricsLn.Addr().Network() == "unix" {
			metricsAt = "unix:" + metricsLn.Addr().String() + " (GET /metrics)"
		}
	}

	l.cfg = c.Config() // the timeouts, with their defaults

	srv := &http.Server{Handler: front.instrument(p), Protocols: new(http.Protocols), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	for _, ln := range listeners {
		go srv.Serve(ln)
	}
	addrs := make([]string, len(listeners))
	for i, ln := range listeners {
		addrs[i] = ln.Addr().String()
	}
	log.Info("memdrain listening", "listen", strings.Join(addrs, ","), "control", cfg.Control, "metrics", metricsAt,
		"pid_file", o.pidFile, "command", strings.Join(o.command, " "))

	// Signals are the supervisor's (cluster.Run): SIGTERM or SIGINT drains
	// every worker, and the first drain for a signal stops the front (see
	// launcher.stopFront), so nothing can catch a signal that the
	// supervisor misses.
	l.front = func() {
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.DrainTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	}
	err = c.Run(func(*cluster.Worker) error { return errors.New("memdrain: not a worker") })
	srv.Close() // after a shutdown, already closed; after a give-up or a second signal, at once
	l.waitFront()
	if err != nil {
		log.Error("memdrain stopped", "err", err.Error())
		return 1
	}
	log.Info("memdrain stopped")
	return 0
}

// closeAll closes each listener that is not nil.
func closeAll(listeners []net.Listener) {
	for _, ln := range listeners {
		if ln != nil {
			ln.Close()
		}
	}
}

// listen returns the sockets systemd passed (socket activation), ordered
// by the --listen addresses if they were given, or else opens every
// --listen address, or says which one it could not.
func listen(o options, log *slog.Logger) ([]net.Listener, error) {
	var order []string
	if o.listenGiven {
		order = o.listen
	}
	if activated, err := systemd.Listeners(order, "--listen", log); err != nil || activated != nil {
		return activated, err
	}
	var listeners []net.Listener
	for _, addr := range o.listen {
		ln, err := listenaddr.Listen(addr)
		if err != nil {
			closeAll(listeners)
			return nil, fmt.Errorf("--listen %s: %w", addr, err)
		}
		listeners = append(listeners, ln)
	}
	return listeners, nil
}

func newLogger(format string) *slog.Logger { return slog.New(newHandler(format, slog.LevelInfo)) }

func newHandler(format string, level slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.NewTextHandler(os.Stderr, opts)
}

// lookPathProblem says why exec.LookPath refused a command.
func lookPathProblem(err error) string {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return "not found in $PATH"
	case errors.Is(err, os.ErrPermission):
		return "not executable"
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	}
	return err.Error()
}

// configFlags names, in cluster's errors, the flag that set each field.
var configFlags = strings.NewReplacer(
	"Config.Workers", "--workers",
	"Config.Control", "--control",
	"Config.MaxMemory", "--max-memory",
	"Config.TotalMemory", "--total-memory",
	"Config.HardMemory", "--hard-memory",
	"Config.MaxRequestsJitter", "--max-requests-jitter",
	"Config.MaxRequests", "--max-requests",
	"Config.MaxAgeJitter", "--max-age-jitter",
	"Config.MaxAge", "--max-age",
	"Config.CheckInterval", "--check-interval",
	"Config.ReadyTimeout", "--ready-timeout",
	"Config.DrainTimeout", "--drain-timeout",
	"Config.KillGrace", "--kill-grace",
	"MaxMemory", "--max-memory",
	"TotalMemory", "--total-memory",
	"HardMemory", "--hard-memory",
	"MaxRequests", "--max-requests",
	"MaxAge", "--max-age",
)

// flagNames rewrites cluster's errors in the command's words.
func flagNames(err error) string { return configFlags.Replace(err.Error()) }
