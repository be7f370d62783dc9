package cluster

import (
	"os"
	"slices"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// Replacing a worker: fork first. The replacement is spawned beside the old
// worker, and only once it reports ready is the old one told to drain.

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
		} // else the old one died while this one started: nothing to drain
	}
	switch {
	case p.asked != 0:
		m.enqueue(p, p.asked)
	case p.reloads < m.reloads:
		// Spawned before the last reload, from what may be the old binary:
		// replace it in turn.
		m.enqueue(p, drain.Reload)
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
	for !m.stopping && m.replacing() < m.cfg.MaxReplacements && len(m.queue) > 0 {
		s := m.queue[0]
		m.queue = m.queue[1:]
		reason := s.queued
		s.queued = 0
		old := s.current
		if reason == 0 || old == nil || old.state != StateServing || s.next != nil {
			continue // stale: the slot's worker changed since it was queued
		}
		m.log.Info("replacing worker", "worker", s.id, "pid", old.pid, "reason", reason.String(), "memory", old.memory)
		m.spawn(s, old, reason)
	}
}

// replacing returns the replacements being started: each is an extra
// process beside the workers, spawned to take over from one. A worker that
// drains is not counted: a slow drain (a stream held to its deadline) must
// not hold back the replacement of another worker passing its limit. It is
// counted from the processes rather than kept by hand, so no path through
// spawns, crashes and exits can get it wrong.
func (m *master) replacing() int {
	n := 0
	for _, p := range m.procs {
		if p.state == StateStarting && p.replaces != nil {
			n++
		}
	}
	return n
}

// dequeue takes s out of the replacement queue, if it waits there.
func (m *master) dequeue(s *slot) {
	if s.queued != 0 {
		s.queued = 0
		m.queue = slices.DeleteFunc(m.queue, func(q *slot) bool { return q == s })
	}
}

func (m *master) reload() {
	m.reloads++
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
