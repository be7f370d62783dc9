//go:build linux || darwin

package cluster

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sleeper is a Launcher of "sleep" processes: each agent reports ready at
// once and stops its process with SIGTERM when drained. unhealthy, if set,
// makes the first launched worker's Health fail.
type sleeper struct {
	fail      error
	unhealthy bool
	launched  atomic.Int32
}

func (l *sleeper) Launch(w *Worker, start func(*exec.Cmd) error) (Launched, error) {
	if l.fail != nil {
		return nil, l.fail
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := start(cmd); err != nil {
		return nil, err
	}
	s := &sleeping{cmd: cmd, unhealthy: l.unhealthy && l.launched.Add(1) == 1}
	go func() {
		w.Ready()
		<-w.Controller.Draining()
		cmd.Process.Signal(syscall.SIGTERM)
	}()
	return s, nil
}

type sleeping struct {
	cmd       *exec.Cmd
	unhealthy bool
}

func (s *sleeping) Pid() int    { return s.cmd.Process.Pid }
func (s *sleeping) Wait() error { return s.cmd.Wait() }
func (s *sleeping) Kill() error { return s.cmd.Process.Kill() }

func (s *sleeping) Health(context.Context) error {
	if s.unhealthy {
		return errors.New("unhealthy by design")
	}
	return nil
}
func (s *sleeping) Stats() (int, uint64) { return 0, 0 }

// Launched workers go through the one loop: ready, replaced when a limit
// (here MaxAge) calls for it, drained, and their exits planned.
func TestLaunchedWorkersAreSupervisedByTheLoop(t *testing.T) {
	h := startClusterOn(t, Config{Workers: 2, Launcher: &sleeper{}, MaxAge: 300 * time.Millisecond, CheckInterval: 50 * time.Millisecond}, behaveNormally)
	first := h.waitReady(2)
	drained := h.waitFor("a worker drained for its age", func(e Event) bool { return e.Kind == Draining && e.Reason == drain.Age })
	assert.Contains(t, first, drained.Pid)
	h.waitFor("its planned exit", func(e Event) bool { return e.Kind == ExitedPlanned && e.Pid == drained.Pid })
	require.NoError(t, h.stop())
	assert.Zero(t, h.count(ExitedAccidental), "no accidental exit")
	for _, pid := range first {
		assert.False(t, alive(pid), "pid %d still runs after Run returned", pid)
	}
}

// A Launcher that cannot start a worker is a crash: backoff, then a
// give-up naming its error.
func TestALauncherThatFailsIsACrash(t *testing.T) {
	h := startClusterOn(t, Config{Workers: 1, Launcher: &sleeper{fail: errors.New("no such app")}, CrashLimit: 2, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond}, behaveNormally)
	e := h.waitKind(ExitedAccidental)
	require.Error(t, e.Err)
	assert.Contains(t, e.Err.Error(), "no such app")
	select {
	case err := <-h.runErr:
		h.runErr <- err
		require.Error(t, err)
		assert.True(t, strings.Contains(err.Error(), "gave up"), "Run returned %v", err)
	case <-time.After(waitLimit):
		t.Fatal("the master did not give up")
	}
}

// A launched worker whose Health fails is hung: killed with its Kill (a
// "sleep 60" exits at once only so), and its slot gets a new worker.
func TestAnUnhealthyLaunchedWorkerIsKilledAndReplaced(t *testing.T) {
	h := startClusterOn(t, Config{Workers: 1, Launcher: &sleeper{unhealthy: true}, CheckInterval: 50 * time.Millisecond}, behaveNormally)
	pid := h.waitReady(1)[0]
	hung := h.waitKind(Hung)
	assert.Equal(t, pid, hung.Pid)
	assert.Contains(t, hung.Err.Error(), "unhealthy by design")
	h.waitFor("its exit", func(e Event) bool { return e.Kind == ExitedPlanned && e.Pid == pid })
	if h.count(Ready) < 2 { // its replacement may be ready before it exits
		h.waitReady(1)
	}
	require.NoError(t, h.stop())
}
