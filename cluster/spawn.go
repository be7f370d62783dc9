package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"

	"github.com/memdrain/memdrain/internal/softlimit"
)

// spawner starts every worker from one goroutine locked to its OS thread
// for the life of the master. On Linux the parent-death signal is tied to
// the thread that forked the child, not to the process: a worker forked
// from a thread that the Go runtime later retires would be signalled as if
// the master had died.
//
// The loop never waits for a start. Forking and executing a process, and
// the wait for the exec to succeed, took the loop up to 60 ms on a loaded
// machine, during which no worker was sampled: a worker leaking 200 MiB/s
// grew by 12 MiB, unwatched, past the point where its hard ceiling would
// have drained it. So start only queues the command, and the locked
// thread reports each start's outcome through done.
type spawner struct {
	mu    sync.Mutex
	queue []spawnRequest
	wake  chan struct{} // one pending wake-up is enough: the thread empties the queue
	quit  chan struct{}
}

type spawnRequest struct {
	cmd  *exec.Cmd
	done func(error)
}

func newSpawner() *spawner {
	s := &spawner{wake: make(chan struct{}, 1), quit: make(chan struct{})}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the master
		for {
			select {
			case <-s.wake:
			case <-s.quit:
				return
			}
			for r, ok := s.next(); ok; r, ok = s.next() {
				r.done(r.cmd.Start())
			}
		}
	}()
	return s
}

// start queues cmd to be started, and returns at once. done is called with
// cmd.Start's error from the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd, done func(error)) {
	s.mu.Lock()
	s.queue = append(s.queue, spawnRequest{cmd, done})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *spawner) next() (spawnRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return spawnRequest{}, false
	}
	r := s.queue[0]
	s.queue = s.queue[1:]
	return r, true
}

// stop ends the spawner's thread. The loop returns only once every start
// it asked for was reported (master.unstarted), so none is left queued.
func (s *spawner) stop() { close(s.quit) }

// evSpawned reports the outcome of a start that spawn asked for.
type evSpawned struct {
	p   *proc
	err error
}

// spawn starts a process for slot s. replaces is the process it is to take
// over from (nil for a first start or a respawn).
//
// The slot holds the new proc at once, in next or current, so that nothing
// asks for a second start for it; the process itself joins m.procs, and
// the Started event is emitted, only when it exists (onSpawned). Until
// then it has no pid, m.alive is false for it, and nothing signals it.
func (m *master) spawn(s *slot, replaces *proc, reason drain.Reason) {
	if reason.Valid() {
		m.log.Debug("starting a worker", "worker", s.id, "reason", reason.String())
	} else {
		m.log.Debug("starting a worker", "worker", s.id)
	}
	newProc := m.newProc
	if m.cfg.Launcher != nil {
		newProc = m.newLaunchedProc
	}
	p, err := newProc(s)
	if err != nil {
		m.startFailed(s, replaces, reason, err)
		return
	}
	p.replaces = replaces
	p.reason = reason
	if replaces != nil {
		s.next = p
	} else {
		s.current = p
	}
	m.unstarted++
	if p.agent != nil {
		m.launch(p)
		return
	}
	m.spawner.start(p.cmd, func(err error) {
		for _, f := range p.childFiles {
			f.Close() // the child has its copies, or there is no child
		}
		// Posted before the process's own goroutines start, so every event
		// about the process reaches the loop after this one.
		m.post(evSpawned{p, err})
		if err == nil {
			m.follow(p)
		}
	})
}

// startFailed handles a worker whose process could not be started (its
// binary was removed, say): as one that exited at once (see spawnFailed).
func (m *master) startFailed(s *slot, replaces *proc, reason drain.Reason, err error) {
	m.log.Error("spawning a worker failed", "worker", s.id, "err", err)
	m.emit(Event{Kind: ExitedAccidental, Worker: s.id, Err: err})
	m.spawnFailed(s, replaces, reason, err)
}

// onSpawned registers p, whose start spawn asked for, once its process
// exists, or hands the slot to the failure path if it could not start.
func (m *master) onSpawned(p *proc, err error) {
	m.unstarted--
	if m.stopping && m.unstarted == 0 {
		m.stopListening() // put off while starts were under way
	}
	s := p.slot
	if err != nil {
		p.ctrl.close()
		if p.agent != nil {
			p.agent.ctrl.close()
		} else {
			p.handoff.Close()
			p.handoffPeer.Close()
			err = fmt.Errorf("cluster: starting %s: %w", m.exe, err)
		}
		m.forget(p)
		if m.stopping {
			return
		}
		m.startFailed(s, p.replaces, p.reason, err)
		return
	}
	if p.launched != nil {
		p.pid = p.launched.Pid()
	} else {
		p.pid = p.cmd.Process.Pid
	}
	m.procs[p.pid] = p
	p.readyWait = time.AfterFunc(m.cfg.ReadyTimeout, func() { m.post(evReadyTimeout{p}) })
	m.emit(Event{Kind: Started, Worker: s.id, Pid: p.pid, Reason: p.reason})
	if m.stopping {
		m.drainProc(p, m.stopReason()) // the shutdown began while it was being started
	}
}

// newProc prepares a worker process for slot s: its sockets, its command,
// its meters. The spawner starts it; the worker's ends of its sockets stay
// open until then (p.childFiles).
func (m *master) newProc(s *slot) (*proc, error) {
	conn, workerEnd, err := socketPair(syscall.SOCK_STREAM)
	if err != nil {
		return nil, err
	}
	handoff, handoffEnd, err := socketPair(syscall.SOCK_DGRAM)
	if err != nil {
		conn.Close()
		workerEnd.Close()
		return nil, err
	}
	// The master keeps a copy of the worker's end, so that it can take
	// back what is queued for the worker when it exits.
	peer, err := net.FileConn(handoffEnd)
	if err != nil {
		conn.Close()
		workerEnd.Close()
		handoff.Close()
		handoffEnd.Close()
		return nil, fmt.Errorf("cluster: keeping the hand-off socket of a worker: %w", err)
	}
	spec := m.workerSpec(s)
	specJSON, _ := json.Marshal(spec)
	cmd := exec.Command(m.exe, os.Args[1:]...)
	cmd.Env = append(append(workerEnviron(), m.cfg.WorkerEnv...), workerEnv+"="+string(specJSON))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append([]*os.File{workerEnd, handoffEnd}, m.files...)
	cmd.SysProcAttr = workerSysProcAttr()
	// started is when the start was asked for: the time until ready then
	// includes the fork and exec, part of what a replacement's lead must
	// cover.
	p := &proc{slot: s, cmd: cmd,
		handoff: handoff.(*net.UnixConn), handoffPeer: peer.(*net.UnixConn), handoffs: newHandoffQueue(), received: make(chan struct{}),
		childFiles: []*os.File{workerEnd, handoffEnd}}
	m.prepare(p, conn)
	return p, nil
}

// follow starts the goroutines that turn a started worker's messages,
// hand-offs and exit into events.
func (m *master) follow(p *proc) {
	go m.receiveMessages(p)
	go m.receiveFrom(p)
	go p.handoffs.forward(p.handoff, func(pc passedConn) { m.postHandoff(evHandoff{p, pc}) })
	go func() {
		err := p.cmd.Wait()
		p.ctrl.close()
		for _, pc := range p.reclaimHandoffs() {
			m.postHandoff(evHandoff{p, pc})
		}
		m.post(evExit{p, err})
	}()
}

// prepare sets up what every worker process has, however it is started:
// its control link, its meters and its retirement. conn is the master's
// end of the link.
func (m *master) prepare(p *proc, conn net.Conn) {
	// started is when the start was asked for: the time until ready then
	// includes the fork and exec, part of what a replacement's lead must
	// cover.
	p.state, p.started, p.reloads = StateStarting, time.Now(), m.reloads
	p.ctrl = newLink(conn, m.cfg.HeartbeatTimeout, func(msg message, err error) { m.post(evSendFailed{p, msg, err}) })
	p.meter = memory.Meter{Limit: m.cfg.MaxMemory, Consecutive: m.cfg.Consecutive, Interval: m.cfg.CheckInterval}
	p.ceiling = memory.Meter{Limit: m.cfg.HardMemory, Interval: m.cfg.CheckInterval}
	if m.cfg.MaxAge > 0 {
		p.retireAt = p.started.Add(m.cfg.MaxAge + time.Duration(jitter(int64(m.cfg.MaxAgeJitter))))
	}
}

// workerSpec returns what the master tells slot s's new worker.
func (m *master) workerSpec(s *slot) workerSpec {
	spec := workerSpec{
		ID:            s.id,
		Listeners:     len(m.files),
		DrainTimeout:  m.cfg.DrainTimeout,
		StatsInterval: m.cfg.CheckInterval,
		Heartbeat:     m.cfg.HeartbeatTimeout,
	}
	if m.cfg.MaxMemory > 0 && m.cfg.SoftLimitRatio > 0 {
		spec.SoftLimit = softlimit.Of(m.cfg.MaxMemory, m.cfg.SoftLimitRatio)
		spec.MaxMemory = softlimit.Of(m.cfg.MaxMemory, 1)
	}
	if m.cfg.MaxRequests > 0 {
		spec.MaxRequests = uint64(m.cfg.MaxRequests) + uint64(jitter(int64(m.cfg.MaxRequestsJitter)))
	}
	return spec
}

// receiveMessages posts every message p sends to the loop, then the end
// of its link.
func (m *master) receiveMessages(p *proc) {
	for {
		msg, err := p.ctrl.receive()
		if err != nil {
			m.post(evClosed{p})
			return
		}
		m.post(evMessage{p, msg})
	}
}

// jitter returns a random number from 0 to n, both included.
func jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n) + rand.Int64N(2) // n+1 would overflow at MaxInt64
}
