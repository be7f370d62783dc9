package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/softlimit"
	"github.com/memdrain/memdrain/internal/tick"
)

// workerEnv marks a worker process and carries its spec from the master.
// Its presence is how Run knows which side it is on.
const workerEnv = "MEMDRAIN_WORKER"

// The inherited descriptors: the control socket, the hand-off socket, then
// the listeners in the order of Config.Listen.
const (
	controlFD       = 3
	handoffFD       = 4
	firstListenerFD = 5
)

// workerSpec is what the master tells a worker about itself.
type workerSpec struct {
	ID            int           `json:"id"`
	Listeners     int           `json:"listeners"`
	DrainTimeout  time.Duration `json:"drain_timeout"`
	SoftLimit     int64         `json:"soft_limit,omitempty"`   // bytes; 0 leaves the Go default
	MaxMemory     int64         `json:"max_memory,omitempty"`   // the recycle limit, where the soft limit rises to
	MaxRequests   uint64        `json:"max_requests,omitempty"` // this worker's quota, jitter included
	StatsInterval time.Duration `json:"stats_interval"`
	Heartbeat     time.Duration `json:"heartbeat"` // HeartbeatTimeout: Config.Health gets half of it
}

// IsWorker reports whether this process was started by a cluster master as
// one of its workers.
func IsWorker() bool {
	_, ok := os.LookupEnv(workerEnv)
	return ok
}

// A Worker is one worker process's view of the cluster, given to the serve
// function passed to Run.
type Worker struct {
	// ID is the worker's slot, 0 to Config.Workers-1. A replacement gets
	// the slot of the worker it replaces.
	ID int
	// Listeners are the master's listening sockets, shared by every
	// worker, in the order of Config.Listen. They implement drain.Handoff:
	// served with drain.Serve (as Serve does), a draining worker passes
	// its connections that carry no request to a serving worker, and they
	// accept the connections handed to this worker beside their own.
	Listeners []net.Listener
	// Controller drains this worker when the master asks, when the master
	// goes away, or on SIGTERM.
	Controller *drain.Controller
	// Logger is the cluster's logger with this worker's id and pid.
	Logger *slog.Logger

	spec      workerSpec
	ctrl      *channel
	readyOnce sync.Once
	served    atomic.Uint64
	counting  atomic.Bool // Handler was called: served is counted
	asked     atomic.Bool // a recycle was requested
	ready     atomic.Bool // Ready told the master
	// stats, for a launched worker (see Launcher), is where its figures
	// come from, in place of Handler's counts.
	stats func() (inFlight int, served uint64)
	// inMaster: this Worker is the agent, in the master's process, of a
	// process a Launcher started, not a worker process of its own.
	inMaster bool
}

// Ready tells the master that this worker serves, so the worker it
// replaces can be drained. Serve calls it; a program that does not use
// Serve calls it once it accepts connections (after any warm-up), and
// wraps its handler with Handler so that its requests are counted. Calls
// after the first do nothing.
func (w *Worker) Ready() {
	if w.Controller.IsDraining() {
		return // told to stop before it served: ready would drain the worker it replaces
	}
	w.readyOnce.Do(func() {
		if err := w.ctrl.send(message{Type: msgReady, Pongs: true}); err != nil {
			w.Logger.Warn("telling the master ready failed", "err", err)
		}
		w.ready.Store(true)
	})
}

// Recycle asks the master to replace this worker, for example after the
// program detected a leak of its own. The master starts a replacement and
// drains this worker once the replacement is ready. Only the first call is
// sent: one replacement retires the worker. A reason that is not valid
// (see drain.Reason.Valid) is sent as drain.Manual.
func (w *Worker) Recycle(reason drain.Reason) {
	if !reason.Valid() {
		reason = drain.Manual // an invalid one cannot be sent, and would block every later call
	}
	if w.asked.CompareAndSwap(false, true) {
		if err := w.ctrl.send(message{Type: msgRecycle, Reason: reason}); err != nil {
			w.Logger.Warn("asking the master for a recycle failed", "err", err)
		}
	}
}

// Handler returns h (http.DefaultServeMux if nil) counting its requests
// as Serve counts them: served, for the master's Status, and
// served against Config.MaxRequests, which asks for a recycle once this
// worker's quota is served. Serve wraps srv.Handler with it; a program that
// serves w.Listeners with a server of its own wraps its handler with it
// (and calls Ready), or MaxRequests never fires. Wrap once per worker: each
// wrapper counts every request it serves, so a request through two is
// counted twice.
func (w *Worker) Handler(h http.Handler) http.Handler {
	if h == nil {
		h = http.DefaultServeMux
	}
	w.counting.Store(true)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if n := w.served.Add(1); w.spec.MaxRequests > 0 && n == w.spec.MaxRequests {
			w.Recycle(drain.Requests)
		}
		h.ServeHTTP(rw, r)
	})
}

// Serve serves srv on the worker's listeners under its Controller (see
// drain.Serve), reports ready, counts the requests served and in flight
// for the master's Status (and for MaxRequests), and returns once the drain
// is over. A program that serves w.Listeners itself counts with Handler.
//
// Ready is reported when srv is about to accept connections, after
// drain.Serve accepted srv: a server it refuses (such as a TLSConfig
// without a certificate) makes Serve return the error without reporting
// ready, so a bad deploy never drains the worker it was to replace.
//
// HTTPS: set srv.TLSConfig, with a certificate (Certificates,
// GetCertificate or GetConfigForClient), and pass the plain listeners in
// Config.Listen or Config.Listeners, never a tls.NewListener. Every worker
// then does its own TLS handshakes, and negotiates HTTP/2 or HTTP/1.1 by
// ALPN as http.Server.ServeTLS does; a plain-HTTP client is refused by the
// handshake. The drain keeps its promise over TLS, with one difference: a
// TLS connection's state lives in its process, so it is never handed to
// another worker. A draining worker's HTTP/1.1 connections get
// "Connection: close" with their next response, an idle one being kept
// until that request, its client's close, or DrainTimeout; its HTTP/2
// connections get GOAWAY as the drain starts, idle ones included, and close
// once their client's streams are done. Clients reconnect to a serving
// worker, and pay a new handshake for it.
//
// Serve takes over srv.Handler and srv.BaseContext, calling the values they
// had, and srv must not be served elsewhere.
func (w *Worker) Serve(srv *http.Server) error {
	if srv == nil {
		return errors.New("cluster: Worker.Serve needs an *http.Server, got nil")
	}
	srv.Handler = w.Handler(srv.Handler)
	// Ready once srv is about to accept (net/http calls BaseContext then),
	// not before drain.Serve: a server it refuses, or one that fails to
	// start, must never drain the worker this one replaces.
	baseContext := srv.BaseContext
	srv.BaseContext = func(ln net.Listener) context.Context {
		w.Ready()
		if baseContext != nil {
			return baseContext(ln)
		}
		return context.Background()
	}
	res, err := drain.Serve(srv, w.Controller, w.Listeners...)
	w.Logger.Info("worker drained", "drain", res)
	return err
}

// runWorker is Run on the worker side.
func runWorker(cfg Config, serve func(*Worker) error) error {
	var spec workerSpec
	if err := json.Unmarshal([]byte(os.Getenv(workerEnv)), &spec); err != nil {
		return fmt.Errorf("cluster: %s is set but is not a worker spec from a master (%w); unset it to run this program as the master", workerEnv, err)
	}
	ctrlConn, err := inherited(controlFD, "the master's control socket", net.FileConn)
	if err != nil {
		return err
	}
	log := cfg.Logger.With("worker", spec.ID, "pid", os.Getpid())
	ctrl := newChannel(ctrlConn)
	defer ctrl.close()
	out, listeners, closeHandoffs, err := openHandoffs(spec.Listeners)
	if err != nil {
		return err
	}
	defer closeHandoffs()
	stopSoftLimit, _ := softlimit.Start(spec.SoftLimit, spec.MaxMemory)
	defer stopSoftLimit()
	c, err := drain.New(drain.Config{Timeout: spec.DrainTimeout, Logger: log})
	if err != nil {
		return err
	}
	out.drain = c
	shared := make([]net.Listener, len(listeners))
	for i, ln := range listeners {
		shared[i] = ln
	}
	w := &Worker{ID: spec.ID, Listeners: shared, Controller: c, Logger: log, spec: spec, ctrl: ctrl}

	pings, stopAnswering := w.answerPings(cfg.Health)
	defer stopAnswering()
	go w.follow(pings)
	stopSignals := drainOnSignal(c)
	defer stopSignals()
	stopStats := w.reportStats()
	defer stopStats()
	return serve(w)
}

// follow carries out the master's orders until the control socket ends.
// The end of the socket means the master is gone: the worker drains rather
// than live on as an orphan. Pings go to pings, answered elsewhere, so
// that a slow health check never delays a drain; a ping that finds an
// earlier one still waiting there goes unanswered, which the master counts
// against the worker.
func (w *Worker) follow(pings chan<- uint64) {
	for {
		m, err := w.ctrl.receive()
		if err != nil {
			if w.Controller.Start(drain.Supervisor) && !w.inMaster {
				w.Logger.Warn("master gone; draining")
			} // an agent's link ends when its process has exited: nothing to say
			return
		}
		switch m.Type {
		case msgDrain:
			w.Controller.Start(m.Reason)
		case msgPing:
			select {
			case pings <- m.Seq:
			default:
			}
		}
	}
}

func drainOnSignal(c *drain.Controller) (stop func()) {
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case <-caught:
			c.Start(drain.Signal)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(caught)
		close(done)
	}
}

// reportStats sends the worker's figures to the master every interval.
func (w *Worker) reportStats() (stop func()) {
	return tick.Every(w.spec.StatsInterval, func() bool {
		msg := message{Type: msgStats, InFlight: w.Controller.InFlight(), Served: w.served.Load(), Counts: w.counting.Load()}
		if w.stats != nil {
			msg.InFlight, msg.Served = w.stats()
			msg.Counts = true
			// Counted elsewhere, the quota is checked here: up to a
			// StatsInterval late.
			if w.spec.MaxRequests > 0 && msg.Served >= w.spec.MaxRequests {
				w.Recycle(drain.Requests)
			}
		}
		w.ctrl.send(msg)
		return true
	})
}

// inherited opens descriptor fd, which the master handed over, with open
// (net.FileConn or net.FileListener). what names it in the error a process
// started by hand gets.
func inherited[T any](fd int, what string, open func(*os.File) (T, error)) (T, error) {
	var zero T
	f := os.NewFile(uintptr(fd), what)
	if f == nil {
		return zero, notInherited(fd, what)
	}
	defer f.Close() // open keeps its own duplicate
	v, err := open(f)
	if err != nil {
		return zero, fmt.Errorf("%w: %v", notInherited(fd, what), err)
	}
	return v, nil
}

func notInherited(fd int, what string) error {
	return fmt.Errorf("cluster: %s is set but file descriptor %d is not %s; a worker must be started by its master, not by hand", workerEnv, fd, what)
}
