package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/drain"

	"github.com/memdrain/memdrain/internal/softlimit"
)

// spawner starts every worker from one goroutine locked to its OS thread
// for the life of the master. On Linux the parent-death signal is tied to
// the thread that forked the child, not to the process: a worker forked
// from a thread that the Go runtime later retires would be signalled as if
// the master had died.
type spawner struct {
	requests chan spawnRequest
}

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest)}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the master
		for r := range s.requests {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.requests <- spawnRequest{cmd, done}
	return <-done
}

func (s *spawner) stop() { close(s.requests) }

// spawn starts a process for slot s. replaces is the process it is to take
// over from (nil for a first start or a respawn).
func (m *master) spawn(s *slot, replaces *proc, reason drain.Reason) {
	p, err := m.startProcess(s)
	if err != nil {
		// Starting the binary failed (it was removed, say): handled as a
		// process that exited at once (see spawnFailed).
		m.log.Error("spawning a worker failed", "worker", s.id, "err", err)
		m.emit(Event{Kind: ExitedAccidental, Worker: s.id, Err: err})
		m.spawnFailed(s, replaces, reason, err)
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
	if m.cfg.Launcher != nil {
		return m.launchProcess(s)
	}
	conn, workerEnd, err := socketPair(syscall.SOCK_STREAM)
	if err != nil {
		return nil, err
	}
	defer workerEnd.Close()
	handoff, handoffEnd, err := socketPair(syscall.SOCK_DGRAM)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer handoffEnd.Close()
	// The master keeps a copy of the worker's end, so that it can take
	// back what is queued for the worker when it exits.
	peer, err := net.FileConn(handoffEnd)
	if err != nil {
		conn.Close()
		handoff.Close()
		return nil, fmt.Errorf("cluster: keeping the hand-off socket of a worker: %w", err)
	}
	spec := m.workerSpec(s)
	specJSON, _ := json.Marshal(spec)
	cmd := exec.Command(m.exe, os.Args[1:]...)
	cmd.Env = append(append(os.Environ(), m.cfg.WorkerEnv...), workerEnv+"="+string(specJSON))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append([]*os.File{workerEnd, handoffEnd}, m.files...)
	cmd.SysProcAttr = workerSysProcAttr()
	if err := m.spawner.start(cmd); err != nil {
		conn.Close()
		handoff.Close()
		peer.Close()
		return nil, fmt.Errorf("cluster: starting %s: %w", m.exe, err)
	}
	p := &proc{slot: s, pid: cmd.Process.Pid, cmd: cmd,
		handoff: handoff.(*net.UnixConn), handoffPeer: peer.(*net.UnixConn), handoffs: newHandoffQueue(), received: make(chan struct{})}
	m.track(p, conn)
	go m.receiveFrom(p)
	go p.handoffs.forward(p.handoff, func(pc passedConn) { m.postHandoff(evHandoff{p, pc}) })
	go func() {
		err := cmd.Wait()
		p.ctrl.close()
		for _, pc := range p.reclaimHandoffs() {
			m.postHandoff(evHandoff{p, pc})
		}
		m.post(evExit{p, err})
	}()
	return p, nil
}

// workerSpec returns what the master tells slot s's new worker.
func (m *master) workerSpec(s *slot) workerSpec {
	spec := workerSpec{
		ID:            s.id,
		Listeners:     len(m.files),
		Addrs:         m.addrs,
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

// jitter returns a random number from 0 to n, both included.
func jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n) + rand.Int64N(2) // n+1 would overflow at MaxInt64
}
