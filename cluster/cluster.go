// Package cluster runs an HTTP server as a master and N worker processes of
// the same binary on shared listening sockets, and replaces a worker whose
// memory passes a limit without losing a request: the replacement is
// started first, and only once it is ready is the old worker drained (it
// stops accepting, finishes every request, and exits the moment the last
// one ends). Crashed workers are respawned with backoff; planned exits never
// cause a second spawn.
//
// Go has no fork: the master re-executes its own binary (os.Executable) with
// an environment marker, and Run decides which side it is on, like Node's
// cluster.isPrimary:
//
//	func main() {
//		err := cluster.Run(cluster.Config{Listen: []string{":8080"}, MaxMemory: 400 << 20},
//			func(w *cluster.Worker) error {
//				return w.Serve(&http.Server{Handler: mux})
//			})
//		if err != nil {
//			log.Fatal(err)
//		}
//	}
//
// Signals to the master: SIGTERM or SIGINT drain every worker and make Run
// return (a second one kills them at once); SIGHUP replaces every worker,
// one at a time, picking up a new binary at the same path.
//
// With Config.Control set, the master also answers status, reload, stop
// and recycle requests on a unix socket (see ControlRequest), so that the
// memdrain command's "memdrain status" works against the program.
//
// Under systemd the master needs no configuration: with NOTIFY_SOCKET set
// it sends READY=1 once every worker is ready, RELOADING=1 and READY=1
// around a reload, STOPPING=1 at shutdown, a STATUS= line when it changes,
// and WATCHDOG=1 every half of WATCHDOG_USEC from its supervisor loop (for
// Type=notify or notify-reload with WatchdogSec=); with socket activation
// it shares the sockets systemd passed (see Config.Listen). Workers never
// see these variables.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/memdrain/memdrain/internal/listenaddr"
	"github.com/memdrain/memdrain/memory"
)

// A Cluster is a configured cluster, on either side: New it, then Run it.
// On the master side, Status, Recycle, Stop and Reload may be called from
// other goroutines while Run runs.
type Cluster struct {
	cfg Config
	// Stop, Reload and the signals count their requests here, and poke
	// the master's forwarder, which turns new counts into events: a count
	// cannot be lost, however many requests come at once.
	stops, reloads atomic.Int64
	poke           chan struct{} // one pending poke is enough: it reads the counts
	// The counts turned into events so far; only the forwarder uses them.
	stopsSent, reloadsSent int64

	running atomic.Pointer[master] // while the master's loop runs
	// listenGiven: Config.Listen was set, not defaulted; it then orders
	// the sockets systemd passes (see activatedListeners).
	listenGiven bool
}

// Run is New followed by Cluster.Run.
//
// Workers re-execute the program's binary from main, with its arguments and
// environment: the code before Run runs in the master and again in every
// worker (and in every replacement), so it should only read configuration,
// such as flags and FromEnv. Work meant for workers alone, such as opening
// databases or warming caches, goes in serve; work for the master alone
// goes behind Cluster.IsMaster or !IsWorker(). Workers write to the
// master's stdout and stderr (their stdin is /dev/null), so their logs and
// panics appear in the master's output, interleaved with its own.
func Run(cfg Config, serve func(*Worker) error) error {
	c, err := New(cfg)
	if err != nil {
		return err
	}
	return c.Run(serve)
}

// New validates cfg and returns a Cluster. In the master it also checks
// that MaxMemory for every worker, plus the replacements that run beside
// them, fits in the memory the process may use (its cgroup limit, else the
// machine's).
func New(cfg Config) (*Cluster, error) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		return nil, fmt.Errorf("cluster: not supported on %s; it runs on linux and darwin (package drain works everywhere)", runtime.GOOS)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	listenGiven := len(cfg.Listen) > 0
	cfg = cfg.withDefaults()
	if !IsWorker() && (cfg.MaxMemory > 0 || cfg.TotalMemory > 0) {
		available, source, err := memory.AvailableMemory()
		if err != nil {
			cfg.Logger.Warn("could not tell how much memory this process may use; MaxMemory not checked", "err", err)
		} else if err := cfg.checkMemoryFits(available, source); err != nil {
			return nil, err
		}
	}
	return &Cluster{cfg: cfg, poke: make(chan struct{}, 1), listenGiven: listenGiven}, nil
}

// Config returns the configuration c runs with: what New was given, with
// every zero field replaced by its default.
func (c *Cluster) Config() Config { return c.cfg }

// IsMaster reports whether this process is the master (it was not started
// by a master as a worker).
func (c *Cluster) IsMaster() bool { return !IsWorker() }

// Run runs this process's side of the cluster. In a worker it calls serve
// with the Worker and returns what serve returns; the program should then
// exit (non-zero on an error, which the master counts as a crash). In the
// master it supervises the workers until SIGTERM, SIGINT or Stop, drains
// them all, and returns nil; or returns an error if it gave up after too
// many crashes, or could not start.
//
// See Run for what runs where.
func (c *Cluster) Run(serve func(*Worker) error) error {
	if serve == nil {
		return errors.New("cluster: Run needs a serve function, got nil")
	}
	if IsWorker() {
		return runWorker(c.cfg, serve)
	}
	return c.runMaster()
}

// Status returns a snapshot of every worker process, by slot. It returns
// nil in a worker, and when the master is not running.
func (c *Cluster) Status() []WorkerStatus {
	m := c.running.Load()
	if m == nil {
		return nil
	}
	s, _ := m.askStatus(context.Background())
	return s
}

// Recycle asks the master to replace the worker in slot, fork-first, as
// when it passes a limit (reason drain.Manual): a replacement is started
// beside it, and it drains once the replacement is ready. Recycle returns
// once the master has queued the replacement, not when it is done; watch
// Config.OnEvent or Status for that. It returns an error naming the range
// for a slot out of it, and one saying why when the slot has no serving
// worker, is already being replaced or backed off, or the master stops or
// is not running.
func (c *Cluster) Recycle(slot int) error {
	m := c.running.Load()
	if m == nil {
		return errNotRunning
	}
	return c.recycle(context.Background(), m, slot)
}

func (c *Cluster) recycle(ctx context.Context, m *master, slot int) error {
	if slot < 0 || slot >= c.cfg.Workers {
		return fmt.Errorf("cluster: no worker slot %d; accepted: a slot from 0 to %d", slot, c.cfg.Workers-1)
	}
	reply := make(chan error, 1)
	err, askErr := ask(ctx, m, evRecycle{slot, reply}, reply)
	return errors.Join(askErr, err)
}

// Stop asks the master to drain every worker and return, as SIGTERM does.
// A second Stop (or signal) kills the workers at once. Stop does not wait,
// and is never lost: one made before Run stops the master as soon as it
// starts.
func (c *Cluster) Stop() { c.request(&c.stops) }

// Reload asks the master to replace every worker, one at a time, as SIGHUP
// does. Reloads that are still pending when the master reads them are one
// reload.
func (c *Cluster) Reload() { c.request(&c.reloads) }

func (c *Cluster) request(count *atomic.Int64) {
	count.Add(1)
	select {
	case c.poke <- struct{}{}:
	default: // a poke is pending: the forwarder will read this count too
	}
}

// executable finds the binary that workers run. A test replaces it to run
// its workers from a copy it can swap, as a deploy does.
var executable = os.Executable

func (c *Cluster) runMaster() error {
	exe, err := executable()
	if err != nil {
		return fmt.Errorf("cluster: finding this program's binary to start workers: %w", err)
	}
	listeners, files, err := c.listeners(c.cfg.Logger)
	defer func() {
		for _, f := range files {
			f.Close()
		}
		if len(c.cfg.Listeners) == 0 {
			for _, ln := range listeners {
				ln.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	m := &master{
		cfg:       c.cfg,
		log:       c.cfg.Logger.With("master", os.Getpid()),
		exe:       exe,
		listeners: listeners,
		files:     files,
		spawner:   newSpawner(),
		events:    make(chan any, 64),
		done:      make(chan struct{}),
		procs:     make(map[int]*proc),
	}
	defer m.spawner.stop()
	if err := m.startNotify(); err != nil {
		return err
	}
	defer m.stopNotify()
	addrs := make([]string, len(listeners))
	for i, ln := range listeners {
		addrs[i] = ln.Addr().String()
	}
	m.log.Info("master started", "workers", c.cfg.Workers, "listen", strings.Join(addrs, ","),
		"max_memory", memory.FormatSize(c.cfg.MaxMemory))
	stopForwarding := c.forwardSignals(m)
	defer stopForwarding()
	c.running.Store(m)
	defer c.running.Store(nil)
	if c.cfg.Control != "" {
		ln, err := openControl(c.cfg.Control)
		if err != nil {
			return err
		}
		m.log.Info("control socket listening", "control", c.cfg.Control)
		// Deferred after running's: it is closed, and its connections
		// answered, before Run returns.
		defer c.serveControl(m, ln).close()
	}
	return m.loop()
}

// forwardSignals turns signals, Stop and Reload into events for the loop.
func (c *Cluster) forwardSignals(m *master) (stop func()) {
	caught := make(chan os.Signal, 4)
	signal.Notify(caught, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case sig := <-caught:
				if sig == syscall.SIGHUP {
					c.reloads.Add(1)
				} else {
					m.log.Info("signal received", "signal", sig.String())
					c.stops.Add(1)
				}
			case <-c.poke:
			case <-quit:
				return
			}
			if n := c.reloads.Load(); n != c.reloadsSent {
				c.reloadsSent = n
				m.post(evReload{})
			}
			// The first stop drains, the second kills: no more are needed.
			for n := c.stops.Load(); c.stopsSent < min(n, 2); {
				c.stopsSent++
				m.post(evStop{hard: c.stopsSent > 1})
			}
		}
	}()
	return func() {
		signal.Stop(caught)
		close(quit)
		<-finished
	}
}

// listeners returns the sockets to share and their descriptors:
// Config.Listeners if given, else the sockets systemd passed (see
// activatedListeners), else Config.Listen, opened here. A Launcher's
// workers share none, and the sockets systemd passed are left to the
// program (the command's proxy).
func (c *Cluster) listeners(log *slog.Logger) ([]net.Listener, []*os.File, error) {
	if c.cfg.Launcher != nil {
		return nil, nil, nil
	}
	field, given := "Config.Listeners", c.cfg.Listeners
	if len(given) == 0 {
		var order []string
		if c.listenGiven {
			order = c.cfg.Listen
		}
		activated, err := activatedListeners(order, log)
		if err != nil {
			return nil, nil, err
		}
		if len(activated) == 0 {
			return listen(c.cfg.Listen)
		}
		field, given = "socket passed by systemd", activated
		log.Info("using the sockets passed by systemd", "sockets", len(activated))
	}
	var files []*os.File
	for i, ln := range given {
		f, err := listenerFile(ln)
		if err != nil {
			return given, files, fmt.Errorf("cluster: %s [%d]: %w", field, i, err)
		}
		files = append(files, f)
	}
	return given, files, nil
}

// listen opens every address once. The files are the descriptors handed to
// every worker; the master keeps both open for its whole life, so the
// sockets outlive any one worker and no queued connection is lost.
func listen(addrs []string) ([]net.Listener, []*os.File, error) {
	var listeners []net.Listener
	var files []*os.File
	for _, addr := range addrs {
		ln, err := listenaddr.Listen(addr)
		if err != nil {
			return listeners, files, fmt.Errorf("cluster: Config.Listen %q: %w", addr, err)
		}
		listeners = append(listeners, ln)
		f, err := listenerFile(ln)
		if err != nil {
			return listeners, files, fmt.Errorf("cluster: Config.Listen %q: %w", addr, err)
		}
		files = append(files, f)
	}
	return listeners, files, nil
}
