package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/memdrain/memdrain/drain"
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
	addrs     []string
	spawner   *spawner
	events    chan any
	done      chan struct{} // closed when the loop has returned
	publish   func([]WorkerStatus)

	slots      []*slot
	procs      map[int]*proc // by pid, every live worker process
	queue      []*slot       // slots waiting for a replacement, in order
	replacing  int           // replacements under way: new process spawned, old not yet exited
	crashes    []time.Time   // accidental exits within the crash window
	readyTime  time.Duration // smoothed spawn-to-ready time, the Meter's lead
	stopping   bool
	giveUpErr  error
	sampleNext *time.Timer
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
	retry    *time.Timer // a pending respawn or replacement retry
	// tooBig counts replacements in a row that were over the memory limit
	// at their first sample: the limit is below what the program needs.
	tooBig int
}

// proc is one worker process.
type proc struct {
	slot      *slot
	pid       int
	cmd       *exec.Cmd
	ctrl      *channel
	state     WorkerState
	started   time.Time
	readyAt   time.Time
	drainAt   time.Time
	replaces  *proc // the process this one is to replace, until it is ready
	replaced  bool  // this process is being drained because it was replaced
	reason    drain.Reason
	meter     drain.Meter
	sampleAt  time.Time // when memory is next due to be sampled
	sampled   bool      // at least one sample was taken
	memory    uint64
	inFlight  int
	served    uint64
	retireAt  time.Time // MaxAge plus jitter; zero when off
	readyWait *time.Timer
	killWait  *time.Timer
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
	evRetry        struct{ s *slot }
	evSample       struct{}
	evStop         struct{ hard bool }
	evReload       struct{}
)

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
	for i := range m.cfg.Workers {
		s := &slot{id: i, backoff: m.cfg.BackoffMin}
		m.slots = append(m.slots, s)
		m.spawn(s, nil, 0)
	}
	m.sampleNext = time.AfterFunc(time.Hour, func() { m.post(evSample{}) })
	defer m.sampleNext.Stop()
	m.scheduleSample()
	for {
		if m.stopping && len(m.procs) == 0 {
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
			if _, alive := m.procs[ev.p.pid]; alive {
				m.emit(Event{Kind: Killed, Worker: ev.p.slot.id, Pid: ev.p.pid, Err: errors.New("drain outlived DrainTimeout + KillGrace")})
				ev.p.cmd.Process.Kill()
			}
		case evRetry:
			m.onRetry(ev.s)
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
		}
		m.pump()
		m.scheduleSample()
		m.publishStatus()
	}
}

// spawn starts a process for slot s. replaces is the process it is to take
// over from (nil for a first start or a respawn).
func (m *master) spawn(s *slot, replaces *proc, reason drain.Reason) {
	p, err := m.startProcess(s)
	if err != nil {
		// Starting the binary failed (it was removed, say): an accident
		// like a crash, subject to the same backoff and crash limit.
		m.log.Error("spawning a worker failed", "worker", s.id, "err", err)
		m.emit(Event{Kind: ExitedAccidental, Worker: s.id, Err: err})
		if replaces != nil {
			m.replacing--
		}
		m.accident(s, time.Time{}, replaces != nil, reason)
		return
	}
	p.replaces = replaces
	p.reason = reason
	if replaces != nil {
		s.next = p
	} else {
		s.current = p
	}
	m.procs[p.pid] = p
	p.readyWait = time.AfterFunc(m.cfg.ReadyTimeout, func() { m.post(evReadyTimeout{p}) })
	m.emit(Event{Kind: Started, Worker: s.id, Pid: p.pid, Reason: reason})
}

func (m *master) startProcess(s *slot) (*proc, error) {
	conn, workerEnd, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer workerEnd.Close()
	spec := workerSpec{
		ID:            s.id,
		Listeners:     len(m.files),
		Addrs:         m.addrs,
		DrainTimeout:  m.cfg.DrainTimeout,
		StatsInterval: m.cfg.CheckInterval,
	}
	if m.cfg.MaxMemory > 0 && m.cfg.SoftLimitRatio > 0 {
		spec.SoftLimit = int64(float64(m.cfg.MaxMemory) * m.cfg.SoftLimitRatio)
	}
	if m.cfg.MaxRequests > 0 {
		spec.MaxRequests = uint64(m.cfg.MaxRequests) + uint64(jitter(int64(m.cfg.MaxRequestsJitter)))
	}
	specJSON, _ := json.Marshal(spec)
	cmd := exec.Command(m.exe, os.Args[1:]...)
	cmd.Env = append(append(os.Environ(), m.cfg.WorkerEnv...), workerEnv+"="+string(specJSON))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append([]*os.File{workerEnd}, m.files...)
	cmd.SysProcAttr = workerSysProcAttr()
	if err := m.spawner.start(cmd); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cluster: starting %s: %w", m.exe, err)
	}
	p := &proc{slot: s, pid: cmd.Process.Pid, cmd: cmd, ctrl: newChannel(conn), state: StateStarting, started: time.Now()}
	p.meter = drain.Meter{Limit: m.cfg.MaxMemory, Consecutive: m.cfg.Consecutive, Interval: m.cfg.CheckInterval}
	if m.cfg.MaxAge > 0 {
		p.retireAt = p.started.Add(m.cfg.MaxAge + time.Duration(jitter(int64(m.cfg.MaxAgeJitter))))
	}
	go func() {
		for {
			msg, err := p.ctrl.receive()
			if err != nil {
				return
			}
			m.post(evMessage{p, msg})
		}
	}()
	go func() {
		err := cmd.Wait()
		p.ctrl.close()
		m.post(evExit{p, err})
	}()
	return p, nil
}

// jitter returns a random number from 0 to n, both included.
func jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n) + rand.Int64N(2) // n+1 would overflow at MaxInt64
}

func (m *master) onMessage(p *proc, msg message) {
	if _, alive := m.procs[p.pid]; !alive {
		return
	}
	switch msg.Type {
	case msgReady:
		m.onReady(p)
	case msgRecycle:
		reason := msg.Reason
		if !reason.Valid() {
			reason = drain.Manual
		}
		m.log.Info("worker asked to be recycled", "worker", p.slot.id, "pid", p.pid, "reason", reason.String())
		m.enqueue(p, reason)
	case msgStats:
		p.inFlight, p.served = msg.InFlight, msg.Served
	}
}

func (m *master) onReady(p *proc) {
	if p.state != StateStarting {
		return
	}
	p.readyWait.Stop()
	p.state = StateServing
	p.readyAt = time.Now()
	took := p.readyAt.Sub(p.started)
	m.readyTime = smooth(m.readyTime, took)
	p.meter.Lead = m.readyTime
	p.sampleAt = p.readyAt // sample at once: catches a worker born over its limit
	s := p.slot
	m.emit(Event{Kind: Ready, Worker: s.id, Pid: p.pid, Duration: took})
	if m.stopping {
		m.drainProc(p, drain.Signal)
		return
	}
	if s.next == p {
		old := p.replaces
		s.current, s.next, p.replaces = p, nil, nil
		if old != nil {
			m.drainProc(old, p.reason)
		} else {
			m.replacing-- // the old one died while this one started
		}
	}
}

func smooth(avg, sample time.Duration) time.Duration {
	if avg == 0 {
		return sample
	}
	return (avg*3 + sample) / 4
}

// drainProc tells p to drain and arms the kill timer.
func (m *master) drainProc(p *proc, reason drain.Reason) {
	if p.state == StateDraining {
		return
	}
	p.readyWait.Stop()
	p.state = StateDraining
	p.drainAt = time.Now()
	p.reason = reason
	p.replaced = p.slot.current != p && !m.stopping
	if p.slot.current == p {
		p.slot.current = nil
	}
	m.emit(Event{Kind: Draining, Worker: p.slot.id, Pid: p.pid, Reason: reason, Memory: p.memory})
	if err := p.ctrl.send(message{Type: msgDrain, Reason: reason}); err != nil {
		m.log.Warn("telling a worker to drain failed; stopping it with SIGTERM", "worker", p.slot.id, "pid", p.pid, "err", err)
		p.cmd.Process.Signal(os.Interrupt)
	}
	p.killWait = time.AfterFunc(m.cfg.DrainTimeout+m.cfg.KillGrace, func() { m.post(evKillTimeout{p}) })
}

func (m *master) onExit(p *proc, err error) {
	delete(m.procs, p.pid)
	p.readyWait.Stop()
	if p.killWait != nil {
		p.killWait.Stop()
	}
	s := p.slot
	if p.state == StateDraining {
		took := time.Since(p.drainAt)
		m.emit(Event{Kind: ExitedPlanned, Worker: s.id, Pid: p.pid, Reason: p.reason, Duration: took, Err: err})
		if p.replaced {
			m.replacing--
		}
		return
	}
	if err == nil {
		err = errors.New("exited with status 0 without being asked to drain")
	}
	m.emit(Event{Kind: ExitedAccidental, Worker: s.id, Pid: p.pid, Memory: p.memory, Err: err})
	if m.stopping {
		m.forget(p)
		return
	}
	s.restarts++
	switch {
	case s.next == p: // a replacement died before it was ready
		s.next = nil
		if p.replaces != nil {
			m.replacing--
		}
		m.accident(s, p.started, true, p.reason)
	case s.current == p && s.next != nil: // the old one died; its replacement is on the way
		s.current = nil
		s.next.replaces = nil
		m.replacing--
		m.noteCrash(s, p.started)
	case s.current == p:
		s.current = nil
		m.accident(s, p.started, false, 0)
	}
}

// forget removes p from its slot without consequences (while stopping).
func (m *master) forget(p *proc) {
	s := p.slot
	if s.current == p {
		s.current = nil
	}
	if s.next == p {
		s.next = nil
	}
}

// accident records a crash in slot s and schedules what comes next: a
// respawn, or a retry of the replacement that failed.
func (m *master) accident(s *slot, started time.Time, wasReplacement bool, reason drain.Reason) {
	if m.noteCrash(s, started) {
		return
	}
	delay := s.backoff
	s.backoff = min(s.backoff*2, m.cfg.BackoffMax)
	if wasReplacement {
		s.queued = reason // retried through the queue after the backoff
	}
	m.emit(Event{Kind: Respawn, Worker: s.id, Duration: delay, Reason: reason})
	s.retry = time.AfterFunc(delay, func() { m.post(evRetry{s}) })
}

// noteCrash counts a crash against the crash limit and gives up when it is
// reached. It reports whether the master gave up.
func (m *master) noteCrash(s *slot, started time.Time) bool {
	now := time.Now()
	if !started.IsZero() && now.Sub(started) >= m.cfg.StableAfter {
		s.backoff = m.cfg.BackoffMin // it had been stable: start the backoff over
	}
	m.crashes = append(m.crashes, now)
	m.crashes = slices.DeleteFunc(m.crashes, func(t time.Time) bool { return now.Sub(t) > m.cfg.CrashWindow })
	if len(m.crashes) < m.cfg.CrashLimit {
		return false
	}
	err := fmt.Errorf("cluster: gave up after %d worker crashes within %v (CrashLimit %d, CrashWindow %v); the last was worker %d", len(m.crashes), m.cfg.CrashWindow, m.cfg.CrashLimit, m.cfg.CrashWindow, s.id)
	m.emit(Event{Kind: GiveUp, Worker: s.id, Err: err})
	m.shutdown(err)
	return true
}

func (m *master) onRetry(s *slot) {
	s.retry = nil
	if m.stopping {
		return
	}
	if s.queued != 0 {
		reason := s.queued
		s.queued = 0
		if s.current != nil && s.current.state == StateServing {
			m.enqueue(s.current, reason)
			return
		}
	}
	if s.current == nil && s.next == nil {
		m.spawn(s, nil, 0)
	}
}

func (m *master) onReadyTimeout(p *proc) {
	if _, alive := m.procs[p.pid]; !alive || p.state != StateStarting {
		return
	}
	err := fmt.Errorf("not ready within ReadyTimeout %v", m.cfg.ReadyTimeout)
	m.emit(Event{Kind: ReadyTimeout, Worker: p.slot.id, Pid: p.pid, Err: err})
	// Its exit is then handled as an accident: the replacement is retried
	// with backoff and the old worker keeps serving.
	p.cmd.Process.Kill()
}

// enqueue asks for p to be replaced and reports whether it was queued: not
// when a replacement is already queued, under way, or backed off.
func (m *master) enqueue(p *proc, reason drain.Reason) bool {
	s := p.slot
	if m.stopping || s.current != p || p.state != StateServing || s.next != nil || s.queued != 0 || s.retry != nil {
		return false
	}
	s.queued = reason
	m.queue = append(m.queue, s)
	return true
}

// pump starts queued replacements while fewer than MaxReplacements run.
func (m *master) pump() {
	for !m.stopping && m.replacing < m.cfg.MaxReplacements && len(m.queue) > 0 {
		s := m.queue[0]
		m.queue = m.queue[1:]
		reason := s.queued
		s.queued = 0
		old := s.current
		if old == nil || old.state != StateServing || s.next != nil {
			continue
		}
		m.replacing++
		m.log.Info("replacing worker", "worker", s.id, "pid", old.pid, "reason", reason.String(), "memory", old.memory)
		m.spawn(s, old, reason)
	}
}

func (m *master) reload() {
	m.log.Info("reload: replacing every worker, one at a time")
	for _, s := range m.slots {
		if s.current != nil {
			m.enqueue(s.current, drain.Reload)
		}
	}
}

// shutdown drains every worker and stops respawning. err is what Run will
// return once every worker has exited.
func (m *master) shutdown(err error) {
	if m.stopping {
		return
	}
	m.stopping = true
	m.giveUpErr = err
	m.queue = nil
	for _, s := range m.slots {
		if s.retry != nil {
			s.retry.Stop()
			s.retry = nil
		}
	}
	reason := drain.Signal
	if err != nil {
		reason = drain.Supervisor
	}
	m.log.Info("stopping: draining every worker", "workers", len(m.procs))
	for _, p := range m.procs {
		m.drainProc(p, reason)
	}
}

func (m *master) killAll() {
	for _, p := range m.procs {
		p.cmd.Process.Kill()
	}
	// Wait for the exits so no worker outlives Run, and nothing is left
	// unreaped.
	for len(m.procs) > 0 {
		if ev, ok := (<-m.events).(evExit); ok {
			delete(m.procs, ev.p.pid)
		}
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
		attrs = append(attrs, "memory", drain.FormatSize(e.Memory))
	}
	if e.Duration != 0 {
		attrs = append(attrs, "duration", e.Duration)
	}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err.Error())
	}
	level := slog.LevelInfo
	switch e.Kind {
	case ExitedAccidental, ReadyTimeout, Killed, OverLimit:
		level = slog.LevelWarn
	case ConfigProblem, GiveUp:
		level = slog.LevelError
	}
	m.log.Log(context.Background(), level, strings.ReplaceAll(e.Kind.String(), "-", " "), attrs...)
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}

func (m *master) publishStatus() {
	if m.publish == nil {
		return
	}
	status := make([]WorkerStatus, 0, len(m.procs))
	for _, p := range m.procs {
		status = append(status, WorkerStatus{
			Worker: p.slot.id, Pid: p.pid, State: p.state, Memory: p.memory,
			InFlight: p.inFlight, Served: p.served, Started: p.started, Restarts: p.slot.restarts,
		})
	}
	slices.SortFunc(status, func(a, b WorkerStatus) int {
		if a.Worker != b.Worker {
			return a.Worker - b.Worker
		}
		return a.Started.Compare(b.Started)
	})
	m.publish(status)
}
