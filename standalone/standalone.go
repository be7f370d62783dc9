package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/softlimit"
	"github.com/memdrain/memdrain/memory"
)

// Options configures ListenAndServe. The zero value serves until SIGTERM or
// SIGINT with no probe server, and with a memory limit only when the
// process runs in a cgroup (a container) that has one (see
// ContainerLimitRatio).
type Options struct {
	// Watch, when its Limit is set, samples this process's memory and
	// drains when it passes the limit. Watch.Pid is ignored.
	Watch memory.Watch
	// ContainerLimitRatio gives the default Watch.Limit: when Watch.Limit
	// is 0 and a cgroup memory limit applies to this process (memory.max
	// under cgroup v2, memory.limit_in_bytes under v1; see
	// memory.FindContainerLimit), Watch.Limit is this fraction of it, so
	// that the process drains and exits with drain.ExitRecycle before the
	// kernel's OOM killer sends SIGKILL. ListenAndServe logs the limit it
	// chose and where it came from, or that there was none. Zero means
	// memory.DefaultContainerRatio (0.9); a negative value derives no
	// limit. A Watch.Limit that is set always wins. The cgroup is read
	// once, when ListenAndServe starts; a limit file that cannot be read
	// is logged and leaves the process without a limit.
	ContainerLimitRatio float64
	// SoftLimitRatio sets this process's Go soft memory limit
	// (debug.SetMemoryLimit) to this fraction of Watch.Limit while
	// ListenAndServe runs, as a cluster sets it in each worker: the
	// garbage collector works harder before garbage alone could pass the
	// limit. Once the live heap reaches 95 % of the soft limit, the
	// process is leaking for real and the soft limit is raised to
	// Watch.Limit, so the collector does not run without pause until the
	// drain. Zero means 0.9; a negative value sets none. Ignored without a
	// Watch.Limit, and when the GOMEMLIMIT variable is set (the
	// operator's limit wins). The limit from before is put back when
	// ListenAndServe returns.
	SoftLimitRatio float64
	// Signals: the first one received starts the drain with reason
	// Signal, and a second one ends it at once. Nil means SIGTERM and
	// SIGINT. An empty, non-nil slice ([]os.Signal{}) installs no handler
	// at all, for a program that handles its signals itself and calls
	// Controller.Start.
	Signals []os.Signal
	// Listener, when set, is served instead of listening on srv.Addr.
	// When it is nil and systemd passed this process a socket (socket
	// activation: LISTEN_PID is this process and LISTEN_FDS is 1), that
	// socket is served and srv.Addr is ignored; more than one passed
	// socket is an error, since one server serves one.
	Listener net.Listener
	// ProbeAddr, when set, is the address of a second HTTP server for
	// Kubernetes probes, such as ":8081"; see ProbeHandler for what it
	// answers. It stays open for the whole drain and closes when
	// ListenAndServe returns.
	ProbeAddr string
	// ProbeListener, when set, is served as the probe server instead of
	// listening on ProbeAddr. ListenAndServe closes it when it returns.
	ProbeListener net.Listener
	// Logger receives the lifecycle; nil means slog.Default().
	Logger *slog.Logger
}

// ListenAndServe runs one process the way Kubernetes and systemd expect: it
// serves srv (on opts.Listener, else on the socket systemd passed, else on
// srv.Addr, ":http" if empty) until a
// signal, the memory limit, or the end of ctx starts the drain; then it
// drains with Serve and returns the Result. Exit with Result.ExitCode so the
// platform restarts the process when it drained on its own.
//
// A second signal during the drain (a second SIGTERM, or Ctrl-C pressed
// twice) ends the drain at once, as the cluster master kills its workers on
// a second signal: the connections still open are closed, and the Result
// reports DeadlineExceeded and the requests Abandoned, as if the drain
// deadline had fired. Signals are counted whatever started the drain: after
// the memory limit started it, the first SIGTERM still only lets it go on.
// Kubernetes and systemd send one SIGTERM and then SIGKILL after their own
// timeout, so under them only the drain Timeout (kept below that timeout)
// ends a drain early.
//
// Without a Watch.Limit, in a cgroup (a container) with a memory limit,
// ListenAndServe drains at 90 % of that limit, so that the process exits
// with drain.ExitRecycle before the kernel's OOM killer sends SIGKILL; it
// logs the limit and where it came from (see Options.ContainerLimitRatio).
// With a Watch.Limit, given or so taken, ListenAndServe also sets the Go
// soft memory limit below it (see Options.SoftLimitRatio), as a cluster
// worker does.
// OptionsFromEnv and ConfigFromEnv read the MEMDRAIN_* variables a cluster
// reads; ListenAndServe reads none itself.
//
// With opts.ProbeAddr (or ProbeListener) set, ListenAndServe also serves
// ProbeHandler there, from before the first request until it returns.
//
// Under systemd with Type=notify (NOTIFY_SOCKET set), ListenAndServe sends
// READY=1 once it listens, STOPPING=1 when the drain starts, and
// WATCHDOG=1 every half WatchdogSec, each with a STATUS= line; a
// NOTIFY_SOCKET or WATCHDOG_USEC it cannot use is an error, before
// anything is served.
//
// The program must not call srv.Shutdown or srv.Close itself, nor run its
// own signal.Notify-then-Shutdown code beside ListenAndServe: to stop on
// its own terms it cancels ctx or calls c.Start. A Shutdown made before the
// drain started is logged as that mistake and drains with reason Manual
// (see Serve). srv.RegisterOnShutdown functions run when the drain ends,
// not when it starts; long handlers watch Controller.Draining (or
// DrainingFromContext) instead.
func ListenAndServe(ctx context.Context, srv *http.Server, c *drain.Controller, opts Options) (drain.Result, error) {
	if srv == nil || c == nil {
		return drain.Result{}, errors.New("standalone: ListenAndServe needs an *http.Server and a *Controller")
	}
	if r := opts.SoftLimitRatio; math.IsNaN(r) || r > 1 {
		return drain.Result{}, fmt.Errorf("standalone: Options.SoftLimitRatio is %v; accepted: a fraction in (0, 1], 0 for the default %v, or a negative number for no soft limit", r, softlimit.DefaultRatio)
	}
	if r := opts.ContainerLimitRatio; math.IsNaN(r) || r > 1 {
		return drain.Result{}, fmt.Errorf("standalone: Options.ContainerLimitRatio is %v; accepted: a fraction in (0, 1], 0 for the default %v, or a negative number for no limit from the cgroup", r, memory.DefaultContainerRatio)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Watch.Limit == 0 {
		opts.Watch.Limit = containerLimit(opts.ContainerLimitRatio, log)
	}
	if opts.Watch.Limit > 0 {
		if err := opts.Watch.Validate(); err != nil {
			return drain.Result{}, err
		}
	}
	notify, err := newNotifier()
	if err != nil {
		return drain.Result{}, err
	}
	defer notify.close()
	probeLn, err := probeListener(opts)
	if err != nil {
		return drain.Result{}, err
	}
	ln, err := listener(srv, opts)
	if err != nil {
		if probeLn != nil {
			probeLn.Close()
		}
		return drain.Result{}, err
	}
	signals := opts.Signals
	if signals == nil {
		signals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}
	}
	var caught chan os.Signal // nil, never ready, when no signal is handled
	if len(signals) > 0 {
		caught = make(chan os.Signal, 2)
		signal.Notify(caught, signals...)
		defer signal.Stop(caught)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan error, 1)
	if opts.Watch.Limit > 0 {
		w := opts.Watch
		w.Pid = 0
		if w.Logger == nil {
			w.Logger = log
		}
		go func() { watchDone <- w.Run(watchCtx, c) }()
	} else {
		watchDone <- nil
	}

	stopTriggers := make(chan struct{})
	triggersDone := make(chan struct{})
	go func() {
		defer close(triggersDone)
		startTriggers(ctx, c, caught, stopTriggers, log)
	}()
	defer func() {
		close(stopTriggers)
		<-triggersDone
	}()

	if ratio := opts.SoftLimitRatio; opts.Watch.Limit > 0 && ratio >= 0 {
		if ratio == 0 {
			ratio = softlimit.DefaultRatio
		}
		stopSoftLimit, _ := softlimit.Start(softlimit.Of(opts.Watch.Limit, ratio), softlimit.Of(opts.Watch.Limit, 1))
		defer stopSoftLimit()
	}
	log.Info("serving", "addr", ln.Addr().String(), "pid", os.Getpid())
	if probeLn != nil {
		defer serveProbes(c, probeLn, log)()
	}
	defer notify.run(c, ln.Addr().String(), log)()
	result, err := drain.Serve(srv, c, ln)
	stopWatch()
	if werr := <-watchDone; werr != nil && err == nil {
		err = werr
	}
	return result, err
}

// startTriggers starts the drain on the first signal or the end of ctx, and
// ends it at once on a second signal, until stop closes or the drain ends.
func startTriggers(ctx context.Context, c *drain.Controller, caught <-chan os.Signal, stop <-chan struct{}, log *slog.Logger) {
	done := ctx.Done()
	signalled := false
	for {
		select {
		case sig := <-caught:
			if !signalled {
				signalled = true
				log.Info("signal received; draining", "signal", sig.String())
				c.Start(drain.Signal)
				continue
			}
			log.Warn("second signal received; ending the drain now", "signal", sig.String(), "in_flight", c.InFlight())
			c.Expire()
			return
		case <-done:
			done = nil
			c.Start(drain.Manual)
		case <-c.Done():
			return
		case <-stop:
			return
		}
	}
}
