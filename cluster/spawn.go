package cluster

import (
	"os/exec"
	"runtime"
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
