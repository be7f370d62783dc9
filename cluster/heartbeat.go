package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// The heartbeat: the master pings every worker over its control socket,
// one ping outstanding at a time, and a worker that leaves a ping
// unanswered for HeartbeatTimeout is hung: stopped, stuck in a system call,
// wedged. It is killed, and a serving worker's slot gets a new worker at
// once. Config.Health lets the program itself say it is stuck: the worker
// runs it before each answer, and an answer with an error counts as hung.

// beat is one process's heartbeat, kept by the master's loop.
type beat struct {
	seq    uint64    // the last ping sent
	pingAt time.Time // when ping seq was sent; zero once answered
	judged bool      // held to HeartbeatTimeout: it answered a ping, or said at ready that it would
	closed bool      // the worker closed its control socket: it is exiting
	hung   bool      // killed as hung; its exit is on the way
}

// Events of the heartbeat.
type (
	evHeartbeat  struct{}
	evSendFailed struct {
		p   *proc
		m   message
		err error
	}
	evClosed struct{ p *proc } // the worker's end of the control socket ended
)

// heartbeatInterval is the time between two rounds of pings: a few per
// HeartbeatTimeout, so that a ping sent late in a round still times out
// within about a round of the timeout.
func (m *master) heartbeatInterval() time.Duration {
	return min(m.cfg.CheckInterval, m.cfg.HeartbeatTimeout/4)
}

// heartbeat pings every worker that has no ping outstanding, and kills the
// ones whose ping went unanswered for HeartbeatTimeout. A worker that
// neither answered a ping nor said at ready that it would is not judged: it
// is still starting (ReadyTimeout covers it), or it runs a binary from
// before the heartbeat.
func (m *master) heartbeat() {
	now := time.Now()
	for _, p := range m.procs {
		b := &p.beat
		switch {
		case b.hung || b.closed:
		case b.pingAt.IsZero():
			b.seq++
			b.pingAt = now
			if err := p.ctrl.send(message{Type: msgPing, Seq: b.seq}); errors.Is(err, errBacklog) {
				m.hung(p, err)
			}
		case b.judged && now.Sub(b.pingAt) >= m.cfg.HeartbeatTimeout:
			m.hung(p, fmt.Errorf("heartbeat unanswered for %v (HeartbeatTimeout %v)", now.Sub(b.pingAt).Round(time.Millisecond), m.cfg.HeartbeatTimeout))
		}
	}
}

// onPong takes a worker's answer to ping msg.Seq.
func (m *master) onPong(p *proc, msg message) {
	b := &p.beat
	if b.hung || msg.Seq != b.seq {
		return // an answer to an older ping: the last one is still owed
	}
	b.pingAt = time.Time{}
	b.judged = true
	if msg.Err != "" {
		m.hung(p, errors.New(msg.Err))
	}
}

// judgeFrom holds p to HeartbeatTimeout from now on if its ready message
// msg says it answers pings. A ping still outstanding counts from now: it
// may have waited, unread, while the program started up before it called
// Run, and that is no hang.
func (m *master) judgeFrom(p *proc, msg message) {
	b := &p.beat
	if !msg.Pongs || b.judged {
		return
	}
	b.judged = true
	if !b.pingAt.IsZero() {
		b.pingAt = time.Now()
	}
}

// onSendFailed handles a message that the link could not write. A drain
// falls back to SIGINT, which the worker drains on too. A lost ping needs
// nothing: it goes unanswered, and the heartbeat judges.
func (m *master) onSendFailed(p *proc, msg message, err error) {
	if !m.alive(p) || p.beat.hung {
		return
	}
	if msg.Type == msgDrain {
		m.drainBySignal(p, err)
		return
	}
	m.log.Debug("a message to a worker was lost", "worker", p.slot.id, "pid", p.pid, "type", msg.Type, "err", err)
}

// hung kills p, which stopped answering or failed its health check. The
// kill is the master's decision, like a drain's deadline (Killed): a
// serving worker is taken out of its slot as if drained, so that its exit
// is planned, and the slot gets a new worker at once. Neither backoff nor
// CrashLimit applies: the worker started and served, so this is no crash
// loop, each round costs a start plus HeartbeatTimeout, and giving up would drain the workers that still serve. A starting worker
// is left to the accident path, retried with backoff as after a
// ReadyTimeout; a draining one's drain ends here.
func (m *master) hung(p *proc, err error) {
	p.beat.hung = true
	m.emit(Event{Kind: Hung, Worker: p.slot.id, Pid: p.pid, Memory: p.memory, Err: err})
	p.kill()
	m.rerouteHandoffs(p) // it will never read them; its exit may be long in coming
	if p.state != StateServing {
		return
	}
	s := p.slot
	p.state = StateDraining
	p.drainAt = time.Now()
	p.reason = drain.Supervisor
	if s.current != p {
		return // replaced already, and not yet told to drain: nothing to fill
	}
	s.current = nil
	if m.stopping {
		return
	}
	if s.next != nil {
		s.next.replaces = nil // its replacement takes the slot once ready, with nothing to drain
		return
	}
	m.dequeue(s) // a replacement queued for p is moot: the new worker replaces it
	m.spawn(s, nil, 0)
}
