package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// Exits: every exit is planned (the master was draining the worker) or an
// accident (respawn with backoff, and give up after too many).

func (m *master) onExit(p *proc, err error) {
	delete(m.procs, p.pid)
	close(p.handoffOut)
	p.readyWait.Stop()
	if p.killWait != nil {
		p.killWait.Stop()
	}
	s := p.slot
	if p.state == StateDraining {
		took := time.Since(p.drainAt)
		m.emit(Event{Kind: ExitedPlanned, Worker: s.id, Pid: p.pid, Reason: p.reason, Duration: took, Err: err})
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
		m.accident(s, p.started, true, p.reason)
	case s.current == p && s.next != nil: // the old one died; its replacement is on the way
		s.current = nil
		s.next.replaces = nil // a plain start now: nothing left to drain
		m.noteCrash(s, p.started)
	case s.current == p:
		s.current = nil
		s.queued = 0 // its replacement, if queued, is moot: a respawn follows
		m.queue = slices.DeleteFunc(m.queue, func(q *slot) bool { return q == s })
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
	if !m.alive(p) || p.state != StateStarting {
		return
	}
	err := fmt.Errorf("not ready within ReadyTimeout %v", m.cfg.ReadyTimeout)
	m.emit(Event{Kind: ReadyTimeout, Worker: p.slot.id, Pid: p.pid, Err: err})
	// Its exit is then handled as an accident: the replacement is retried
	// with backoff and the old worker keeps serving.
	p.cmd.Process.Kill()
}

func (m *master) killAll() {
	for _, p := range m.procs {
		p.cmd.Process.Kill()
	}
	// Wait for the exits so no worker outlives Run, and nothing is left
	// unreaped.
	for len(m.procs) > 0 {
		switch ev := (<-m.events).(type) {
		case evExit:
			delete(m.procs, ev.p.pid)
			close(ev.p.handoffOut)
		case evHandoff:
			ev.conn.file.Close()
		}
	}
}
