package cluster

import (
	"context"
	"log/slog"
	"net"
	"os/exec"

	"github.com/memdrain/memdrain/drain"
)

// A Launcher starts each worker process in place of the master's re-exec of
// its own binary. It exists for the memdrain command, which supervises any
// HTTP server (a Node or Python app) behind its own proxy with this
// package's one supervisor loop: the same slots, fork-first replacement,
// memory limits, backoff, give-up, reload and heartbeat as Go workers get.
// A master with a Launcher opens no listening sockets and hands off no
// connections: the launcher's processes are reached some other way (the
// command's proxy).
type Launcher interface {
	// Launch starts the process of worker w (w.ID is its slot) by calling
	// start with its command, and returns it. start forks from the
	// master's one locked thread, which keeps a SysProcAttr.Pdeathsig tied
	// to the master's life rather than to a thread's.
	//
	// w is the worker's end of the control link, served in the master's
	// own process: the launcher calls w.Ready once the process serves
	// (and w.Recycle to ask for its replacement), and follows
	// w.Controller, whose drain starts when the master drains the worker
	// or once the process has exited. w has no Listeners. A Launch that
	// returns an error must leave no process behind.
	Launch(w *Worker, start func(*exec.Cmd) error) (Launched, error)
}

// Launched is a worker process started by a Launcher, as the master sees
// it.
type Launched interface {
	// Pid is the process the master names in its events and measures with
	// Config.Sampler.
	Pid() int
	// Wait waits for the process to exit and reaps it, and returns what
	// exec.Cmd.Wait returns. The master calls it once.
	Wait() error
	// Kill ends the process and everything it started, at once, with
	// SIGKILL. The master calls it for a worker that is hung, missed
	// ReadyTimeout or outlived its drain. Once Wait has reaped the
	// process, it must do nothing: its pid may belong to another process.
	Kill() error
	// Health is called on every heartbeat while the worker serves, as
	// Config.Health is in a Go worker: an error makes the worker hung.
	Health(ctx context.Context) error
	// Stats returns the worker's requests in flight and served so far. The
	// master reads it every CheckInterval, and the served count recycles
	// the worker at MaxRequests (plus its jitter).
	Stats() (inFlight int, served uint64)
}

// newLaunchedProc prepares a worker for slot s that Config.Launcher will
// start. The worker's end of its control link is a Worker served by
// goroutines of the master, over an in-process pipe, so the loop talks to
// it exactly as to a Go worker.
func (m *master) newLaunchedProc(s *slot) (*proc, error) {
	controller, err := drain.New(drain.Config{Timeout: m.cfg.DrainTimeout, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	conn, workerEnd := net.Pipe()
	handoffs := newHandoffQueue()
	handoffs.close() // it takes no connections: routeHandoff passes it by
	p := &proc{slot: s, handoffs: handoffs,
		agent: &Worker{ID: s.id, Controller: controller, Logger: m.log.With("worker", s.id), spec: m.workerSpec(s), ctrl: newChannel(workerEnd), inMaster: true}}
	m.prepare(p, conn)
	return p, nil
}

// launch calls Config.Launcher for p off the loop, which never waits for a
// start (see spawner), and reports the outcome as evSpawned.
func (m *master) launch(p *proc) {
	start := func(cmd *exec.Cmd) error {
		done := make(chan error, 1)
		m.spawner.start(cmd, func(err error) { done <- err })
		return <-done
	}
	go func() {
		launched, err := m.cfg.Launcher.Launch(p.agent, start)
		if err == nil {
			p.launched = launched // before the post: onSpawned reads it
		}
		m.post(evSpawned{p, err})
		if err == nil {
			m.followLaunched(p)
		}
	}()
}

// followLaunched starts the goroutines of a launched worker: its agent's
// (pings, orders, stats), the reader of its messages, and the wait for its
// exit.
func (m *master) followLaunched(p *proc) {
	w := p.agent
	w.stats = p.launched.Stats
	pings, stopAnswering := w.answerPings(p.launched.Health)
	go w.follow(pings)
	stopStats := w.reportStats()
	go m.receiveMessages(p)
	go func() {
		err := p.launched.Wait()
		stopStats()
		stopAnswering()
		p.ctrl.close() // w.follow sees the end: w.Controller's drain starts, and the launcher lets go
		m.post(evExit{p, err})
	}()
}

// kill ends p at once: its whole tree for a launched worker.
func (p *proc) kill() {
	if p.launched != nil {
		p.launched.Kill()
		return
	}
	p.cmd.Process.Kill()
}
