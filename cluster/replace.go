package cluster

import (
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"
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
	p.sampleAt = p.readyAt // sample at once: catches a worker born over its limit
	s := p.slot
	m.emit(Event{Kind: Ready, Worker: s.id, Pid: p.pid, Duration: took})
	if m.stopping {
		m.drainProc(p, m.stopReason())
		return
	}
	if s.next == p {
		old := p.replaces
		s.current, s.next, p.replaces = p, nil, nil
		if old != nil {
			m.drainProc(old, p.reason)
		} // else the old one died while this one started: nothing to drain
		if p.reason == drain.Reload {
			m.reloadReady()
		}
	}
	switch {
	case p.asked != 0:
		m.enqueue(p, p.asked)
	case p.reloads < m.reloads && !m.lastReload.stopped:
		// Spawned before the last reload, from what may be the old binary:
		// replace it in turn (unless that reload failed: the binary on disk
		// does not start).
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
	m.rerouteHandoffs(p)
	if err := p.ctrl.send(message{Type: msgDrain, Reason: reason}); err != nil {
		m.drainBySignal(p, err)
	}
	p.killWait = time.AfterFunc(m.cfg.DrainTimeout+m.cfg.KillGrace, func() { m.post(evKillTimeout{p}) })
}

// drainBySignal stops p with SIGTERM, on which a worker drains as on the
// message, when the drain message could not be sent. A launched worker's
// end of the link is in this process: its drain is started there.
func (m *master) drainBySignal(p *proc, err error) {
	if p.agent != nil {
		p.agent.Controller.Start(p.reason)
		return
	}
	m.log.Warn("telling a worker to drain failed; stopping it with SIGTERM", "worker", p.slot.id, "pid", p.pid, "err", err)
	p.cmd.Process.Signal(syscall.SIGTERM)
}

// recycle queues the worker of slot id for a manual replacement, or says
// why it cannot be (Cluster.Recycle).
func (m *master) recycle(id int) error {
	s := m.slots[id]
	p := s.current
	switch {
	case m.stopping:
		return fmt.Errorf("cluster: worker %d not recycled: the master is stopping", id)
	case p == nil || p.state != StateServing:
		return fmt.Errorf("cluster: worker %d not recycled: no worker serves in that slot now (starting or respawning)", id)
	case !m.enqueue(p, drain.Manual):
		return fmt.Errorf("cluster: worker %d (pid %d) not recycled: a replacement is already queued, starting or backed off", id, p.pid)
	}
	m.log.Info("worker recycle asked", "worker", id, "pid", p.pid)
	return nil
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
		m.log.Info("replacing worker", "worker", s.id, "pid", old.pid, "reason", reason.String(), "memory", memory.FormatSize(old.memory))
		m.spawn(s, old, reason)
	}
}

// replacing returns the replacements being started: each is an extra
// process beside the workers, spawned to take over from one. A worker that
// drains is not counted: a slow drain (a stream held to its deadline) must
// not hold back the replacement of another worker passing its limit. It is
// counted from the slots rather than kept by hand, so no path through
// spawns, crashes and exits can get it wrong; from the slots, not from
// m.procs, so that a replacement whose process is still being forked
// counts too.
func (m *master) replacing() int {
	n := 0
	for _, s := range m.slots {
		if s.next != nil && s.next.replaces != nil {
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
	m.lastReload = reloadState{}
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
		m.retryAfter(s, noRetry)
	}
	m.stopListening()
	m.log.Info("stopping: draining every worker", "workers", len(m.procs))
	for _, p := range m.procs {
		m.drainProc(p, m.stopReason())
	}
}

// stopReason is the reason every worker is drained for once the master
// stops: Supervisor after a give-up, Signal for SIGTERM, SIGINT or Stop.
func (m *master) stopReason() drain.Reason {
	if m.giveUpErr != nil {
		return drain.Supervisor
	}
	return drain.Signal
}

// stopListening closes the master's copies of the listening sockets when
// the shutdown starts. A socket listens while any process holds it, and
// each worker closes its own copy when its drain starts; so once every
// worker is draining, new connections are refused at once rather than
// queued where nobody will accept them. Connections already accepted are
// not touched: they finish in their workers.
//
// Sockets from Config.Listeners belong to the caller, who keeps them open
// (systemd's socket activation, say, holds its own copy too, so that
// connections wait for the next start): only the master's duplicates are
// closed, and the socket keeps queueing until its other holders close it.
//
// A start under way reads m.files, which are its worker's ExtraFiles:
// closed under it, the worker could inherit whatever reused the
// descriptor. So while one is, the closing waits for it (onSpawned calls
// this again): a fork's time, during which connections queue.
func (m *master) stopListening() {
	if m.unstarted > 0 {
		return
	}
	for _, f := range m.files {
		f.Close()
	}
	if len(m.cfg.Listeners) == 0 {
		for _, ln := range m.listeners {
			ln.Close() // a unix socket's file is removed with it
		}
	}
}
