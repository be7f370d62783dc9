package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// Exits: every exit is planned (the master was draining the worker) or an
// accident (respawn with backoff, and give up after too many). A
// replacement that fails before it is ready is neither: the worker it was
// to replace serves on, and the replacement is retried (see
// replacementFailed).

func (m *master) onExit(p *proc, err error) {
	delete(m.procs, p.pid)
	p.readyWait.Stop()
	if p.killWait != nil {
		p.killWait.Stop()
	}
	s := p.slot
	if p.state == StateDraining {
		now := time.Now()
		peak := p.peak()
		m.recycleLag.learn(p.decided, peak, now, m.lagHalfLife())
		m.emit(Event{Kind: ExitedPlanned, Worker: s.id, Pid: p.pid, Reason: p.reason, Duration: now.Sub(p.drainAt), Err: err, Memory: max(peak, p.memory)})
		return
	}
	if err == nil {
		err = errors.New("exited with status 0 without being asked to drain")
	}
	m.emit(Event{Kind: ExitedAccidental, Worker: s.id, Pid: p.pid, Memory: max(p.peak(), p.memory), Err: err})
	if m.stopping {
		m.forget(p)
		return
	}
	s.restarts++
	switch {
	case s.next == p: // a replacement failed before it was ready
		s.next = nil
		cause := fmt.Errorf("exited before it was ready: %w", err)
		if p.failed != nil {
			cause = fmt.Errorf("was killed: %w", p.failed)
		}
		m.replacementFailed(s, p.reason, p.started, fmt.Errorf("worker %d's replacement (pid %d) %w", s.id, p.pid, cause))
	case s.current == p && s.next != nil: // the old one died; its replacement is on the way
		s.current = nil
		s.next.replaces = nil // a plain start now: nothing left to drain
		m.noteCrash(s, p.started)
	case s.current == p:
		s.current = nil
		m.dequeue(s) // its replacement, if queued, is moot: a respawn follows
		m.accident(s, p.started)
	}
}

// peak returns the highest resident memory p reached in its life, once
// it exited; 0 if unknown (see peakRSS).
func (p *proc) peak() uint64 {
	if p.cmd == nil { // a stand-in in a test, or a launched worker: not its process's
		return 0
	}
	return peakRSS(p.cmd.ProcessState)
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

// accident records a crash that left slot s without a worker and schedules
// its respawn after the slot's backoff.
func (m *master) accident(s *slot, started time.Time) {
	if m.noteCrash(s, started) {
		return
	}
	delay := m.backoff(s)
	m.emit(Event{Kind: Respawn, Worker: s.id, Duration: delay})
	m.retryAfter(s, delay)
}

// replacementFailed handles a replacement for slot s that failed before it
// was ready: it exited, was killed at ReadyTimeout, or could not be started.
// cause says which.
//
// While the worker it was to replace serves, that worker is never drained
// for it, and the failure is no crash toward giving up: a broken deploy
// must not take down the workers that still serve. The replacement is
// retried after the slot's backoff; a reload's gives up instead after
// CrashLimit failures in a row (see reloadFailed).
func (m *master) replacementFailed(s *slot, reason drain.Reason, started time.Time, cause error) {
	if s.current == nil { // the worker it was to replace died meanwhile: the slot is empty
		m.accident(s, started)
		return
	}
	if reason == drain.Reload && m.reloadFailed(s, cause) {
		return
	}
	delay := m.backoff(s)
	m.log.Warn("replacement failed; the worker it was to replace serves on", "worker", s.id, "reason", reason.String(), "err", cause.Error(), "retry_in", delay)
	s.queued = reason // retried through the queue after the backoff
	m.emit(Event{Kind: Respawn, Worker: s.id, Duration: delay, Reason: reason})
	m.retryAfter(s, delay)
}

// spawnFailed handles a worker process that could not be started (its
// binary was removed, say): the same as one that exited at once.
func (m *master) spawnFailed(s *slot, replaces *proc, reason drain.Reason, err error) {
	if replaces != nil {
		m.replacementFailed(s, reason, time.Time{}, fmt.Errorf("worker %d's replacement could not be started: %w", s.id, err))
		return
	}
	m.accident(s, time.Time{})
}

// backoff returns the slot's next delay before a retry, and doubles the
// one after it.
func (m *master) backoff(s *slot) time.Duration {
	delay := s.backoff
	s.backoff = min(s.backoff*2, m.cfg.BackoffMax)
	return delay
}

// noteCrash counts a crash against the crash limit and gives up when it is
// reached and no worker serves any more. It reports whether the master
// gave up. While some worker serves, giving up would only drain it: the
// crashing slot is respawned with backoff instead.
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
	if serving := m.serving(); serving > 0 {
		m.log.Warn("crash limit reached, but workers still serve: not giving up; respawning with backoff",
			"crashes", len(m.crashes), "crash_window", m.cfg.CrashWindow, "serving", serving, "worker", s.id)
		return false
	}
	err := fmt.Errorf("cluster: gave up after %d worker crashes within %v (CrashLimit %d, CrashWindow %v) with no worker left serving; the last was worker %d", len(m.crashes), m.cfg.CrashWindow, m.cfg.CrashLimit, m.cfg.CrashWindow, s.id)
	m.emit(Event{Kind: GiveUp, Worker: s.id, Err: err})
	m.shutdown(err)
	return true
}

// serving returns how many worker processes serve.
func (m *master) serving() int {
	n := 0
	for _, p := range m.procs {
		if p.state == StateServing {
			n++
		}
	}
	return n
}

func (m *master) onRetry(r *pendingRetry) {
	s := r.s
	if s.retry != r {
		return // cancelled after it fired: another retry, or none, took its place
	}
	m.retryAfter(s, noRetry)
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
	if !m.alive(p) || p.state != StateStarting {
		return
	}
	p.failed = fmt.Errorf("not ready within ReadyTimeout %v", m.cfg.ReadyTimeout)
	m.emit(Event{Kind: ReadyTimeout, Worker: p.slot.id, Pid: p.pid, Err: p.failed})
	// Its exit is then handled as an accident: the replacement is retried
	// with backoff and the old worker keeps serving.
	p.kill()
}

func (m *master) killAll() {
	m.stopping = true // no respawn for a start that fails meanwhile
	for _, p := range m.procs {
		p.kill()
	}
	// Wait for the exits so no worker outlives Run, and nothing is left
	// unreaped.
	for len(m.procs) > 0 || m.unstarted > 0 {
		switch ev := (<-m.events).(type) {
		case evSpawned:
			m.onSpawned(ev.p, ev.err) // stopping: registered to be killed, or forgotten
			if ev.err == nil {
				ev.p.kill()
			}
		case evExit:
			delete(m.procs, ev.p.pid)
		case evHandoff:
			ev.conn.file.Close()
		}
	}
}
