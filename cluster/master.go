package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"
)

// master is the supervisor. One goroutine, loop, owns all of its state;
// everything else (worker messages, exits, timers, signals) reaches it as
// an event on the events channel.
type master struct {
	cfg       Config
	log       *slog.Logger
	exe       string
	listeners []net.Listener
	files     []*os.File // the listeners' descriptors, handed to every worker
	spawner   *spawner
	events    chan any
	done      chan struct{} // closed when the loop has returned

	slots           []*slot
	procs           map[int]*proc // by pid, every live worker process
	unstarted       int           // starts asked of the spawner and not yet reported (evSpawned)
	queue           []*slot       // slots waiting for a replacement, in order
	crashes         []time.Time   // accidental exits within the crash window
	readyTime       time.Duration // smoothed time from asking for a start to ready: the Meter's least lead (see lead)
	growth          growth        // all workers' memory growth, each Meter's WorstRate
	recycleLag      lag           // how long workers grow after found over their limit: the Lead
	stopping        bool
	parked          []passedConn // hand-offs waiting for a serving worker (routeHandoff)
	reloads         int          // SIGHUPs so far: a process spawned before the last must go
	lastReload      reloadState
	giveUpErr       error
	warnedUncounted bool // checkCounted warned once: the Config, not a worker, is at fault
	sampleNext      *time.Timer
	beatNext        *time.Timer // the next round of heartbeat pings
	notify          notifier    // what systemd was told (notify.go)
}

// slot is one of the Workers places. It holds the serving process and,
// during a replacement, the one that will take over.
type slot struct {
	id       int
	current  *proc
	next     *proc
	queued   drain.Reason // non-zero while waiting in the queue
	backoff  time.Duration
	restarts int
	retry    *pendingRetry // a pending respawn or replacement retry; see retryAfter
	// tooBig counts workers in a row that were over the memory limit when
	// they became ready: the limit is below what the program needs.
	tooBig int
}

// proc is one worker process.
type proc struct {
	slot *slot
	pid  int       // zero until the process exists (onSpawned)
	cmd  *exec.Cmd // nil for a launched worker
	// launched and agent are set for a worker started by Config.Launcher:
	// the process, and the worker's end of its control link, served here.
	launched Launched
	agent    *Worker
	// childFiles are the worker's ends of its sockets, closed once the
	// spawner started it (or failed to).
	childFiles []*os.File
	ctrl       *link
	handoff    *net.UnixConn // the master's end of the hand-off socket
	// handoffPeer is the master's copy of the worker's end, kept so that
	// what is queued for the worker outlives it (reclaimHandoffs).
	handoffPeer *net.UnixConn
	received    chan struct{} // receiveFrom returned
	handoffs    *handoffQueue // connections routed to this worker
	state       WorkerState
	started     time.Time
	readyAt     time.Time
	drainAt     time.Time
	replaces    *proc // the process this one is to replace, until it is ready
	reason      drain.Reason
	meter       memory.Meter
	ceiling     memory.Meter // at Config.HardMemory: past it, drained without waiting for a replacement
	sampleAt    time.Time    // when memory is next due to be sampled
	decided     snapshot     // when it was found over its limit (see recycleLag)
	samples     int          // memory samples taken so far
	memory      uint64
	inFlight    int
	handedTo    int // connections handed to it since its last stats
	// refusesHandoffs: it sent a connection back, draining before the
	// master knew; it is handed nothing more.
	refusesHandoffs bool
	served          uint64
	uncounted       int          // stats reports since ready that said the worker counts nothing
	retireAt        time.Time    // MaxAge plus jitter; zero when off, or once acted on
	reloads         int          // master.reloads when it was spawned
	asked           drain.Reason // a recycle the worker asked for before it was ready
	failed          error        // why the master killed it before it was ready
	readyWait       *time.Timer
	killWait        *time.Timer
	beat            beat
}

// Events that reach the loop.
type (
	evMessage struct {
		p *proc
		m message
	}
	evExit struct {
		p   *proc
		err error
	}
	evReadyTimeout struct{ p *proc }
	evKillTimeout  struct{ p *proc }
	evRetry        struct{ r *pendingRetry }
	evSample       struct{}
	evStop         struct{ hard bool }
	evReload       struct{}
	evStatus       struct{ reply chan []WorkerStatus }
	evRecycle      struct {
		slot  int
		reply chan error
	}
)

// alive reports whether p is still running. It compares the process, not
// only the pid: a late timer must not act on a new process that reuses it.
func (m *master) alive(p *proc) bool { return m.procs[p.pid] == p }

// post hands an event to the loop, or drops it once the loop has returned
// (a timer firing late), so no goroutine is left blocked.
func (m *master) post(ev any) {
	select {
	case m.events <- ev:
	case <-m.done:
	}
}

func (m *master) loop() error {
	defer close(m.done)
	defer func() {
		for _, pc := range m.parked {
			pc.file.Close()
		}
	}()
	for i := range m.cfg.Workers {
		s := &slot{id: i, backoff: m.cfg.BackoffMin}
		m.slots = append(m.slots, s)
		m.spawn(s, nil, 0)
	}
	m.sampleNext = time.AfterFunc(time.Hour, func() { m.post(evSample{}) })
	defer m.sampleNext.Stop()
	m.scheduleSample()
	m.beatNext = time.AfterFunc(m.heartbeatInterval(), func() { m.post(evHeartbeat{}) })
	defer m.beatNext.Stop()
	for {
		if m.stopping && len(m.procs) == 0 && m.unstarted == 0 {
			return m.giveUpErr
		}
		switch ev := (<-m.events).(type) {
		case evMessage:
			m.onMessage(ev.p, ev.m)
		case evExit:
			m.onExit(ev.p, ev.err)
		case evReadyTimeout:
			m.onReadyTimeout(ev.p)
		case evKillTimeout:
			if m.alive(ev.p) {
				m.emit(Event{Kind: Killed, Worker: ev.p.slot.id, Pid: ev.p.pid, Err: errors.New("drain outlived DrainTimeout + KillGrace")})
				ev.p.kill()
			}
		case evSpawned:
			m.onSpawned(ev.p, ev.err)
		case evRetry:
			m.onRetry(ev.r)
		case evSample:
			m.sample()
		case evStop:
			if ev.hard {
				m.killAll()
				return errors.New("cluster: stopped by a second signal; workers killed")
			}
			m.shutdown(nil)
		case evReload:
			m.reload()
		case evStatus:
			ev.reply <- m.status()
		case evRecycle:
			ev.reply <- m.recycle(ev.slot)
		case evHandoff:
			m.routeHandoff(ev)
		case evHeartbeat:
			m.heartbeat()
			m.beatNext.Reset(m.heartbeatInterval())
		case evSendFailed:
			m.onSendFailed(ev.p, ev.m, ev.err)
		case evClosed:
			if m.alive(ev.p) {
				ev.p.beat.closed = true
			}
		case evWatchdog:
			m.onWatchdog()
		}
		m.pump()
		m.routeParked()
		m.scheduleSample()
		m.updateNotify()
	}
}

func (m *master) onMessage(p *proc, msg message) {
	if !m.alive(p) {
		return
	}
	switch msg.Type {
	case msgReady:
		m.judgeFrom(p, msg)
		m.onReady(p)
	case msgRecycle:
		reason := msg.Reason
		if !reason.Valid() {
			reason = drain.Manual
		}
		m.log.Info("worker asked to be recycled", "worker", p.slot.id, "pid", p.pid, "reason", reason.String())
		if p.state == StateStarting {
			p.asked = reason // queued once it is ready: it cannot be replaced before
		} else {
			m.enqueue(p, reason)
		}
	case msgStats:
		p.inFlight, p.served, p.handedTo = msg.InFlight, msg.Served, 0
		m.checkCounted(p, msg.Counts)
	case msgPong:
		m.onPong(p, msg)
	}
}

// emit logs an event and hands it to Config.OnEvent.
func (m *master) emit(e Event) {
	e.Time = time.Now()
	attrs := []any{"worker", e.Worker}
	if e.Pid != 0 {
		attrs = append(attrs, "pid", e.Pid)
	}
	if e.Reason != 0 {
		attrs = append(attrs, "reason", e.Reason.String())
	}
	if e.Memory != 0 {
		attrs = append(attrs, "memory", memory.FormatSize(e.Memory))
	}
	if e.Total != 0 {
		attrs = append(attrs, "total", memory.FormatSize(e.Total))
	}
	if e.Duration != 0 {
		attrs = append(attrs, "duration", e.Duration)
	}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err.Error())
	}
	level := slog.LevelInfo
	switch e.Kind {
	case ExitedAccidental, ReadyTimeout, Killed, OverLimit, HardLimit:
		level = slog.LevelWarn
	case ConfigProblem, GiveUp, ReloadFailed, Hung:
		level = slog.LevelError
	}
	m.log.Log(context.Background(), level, strings.ReplaceAll(e.Kind.String(), "-", " "), attrs...)
	m.notify.count(e)
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}

// ask posts ev to the loop, then waits for its reply on reply. It gives up
// when ctx ends or the loop returns, so a caller off the loop is never
// left blocked.
func ask[T any](ctx context.Context, m *master, ev any, reply chan T) (T, error) {
	var zero T
	select {
	case m.events <- ev:
	case <-m.done:
		return zero, errNotRunning
	case <-ctx.Done():
		return zero, fmt.Errorf("cluster: the supervisor did not take the request: %w", ctx.Err())
	}
	select {
	case v := <-reply:
		return v, nil
	case <-m.done:
		return zero, errNotRunning
	case <-ctx.Done():
		return zero, fmt.Errorf("cluster: the supervisor did not answer: %w", ctx.Err())
	}
}

// errNotRunning: the master's loop is not running.
var errNotRunning = errors.New("cluster: the master is not running")

// askStatus is status, from off the loop.
func (m *master) askStatus(ctx context.Context) ([]WorkerStatus, error) {
	reply := make(chan []WorkerStatus, 1)
	return ask(ctx, m, evStatus{reply}, reply)
}

// status returns a snapshot of every worker process. It is built when asked
// for, not after every decision: with 64 workers that would cost the loop
// more than all its memory samples.
func (m *master) status() []WorkerStatus {
	status := make([]WorkerStatus, 0, len(m.procs))
	for _, p := range m.procs {
		status = append(status, WorkerStatus{
			Worker: p.slot.id, Pid: p.pid, State: p.state, Memory: p.memory,
			InFlight: p.inFlight, Served: p.served, Started: p.started, Restarts: p.slot.restarts,
			Reason: p.reason,
		})
	}
	slices.SortFunc(status, func(a, b WorkerStatus) int {
		if a.Worker != b.Worker {
			return a.Worker - b.Worker
		}
		return a.Started.Compare(b.Started)
	})
	return status
}
