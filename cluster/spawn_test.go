//go:build linux || darwin

package cluster

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheLoopServesWhileAWorkerIsBeingStarted: starting a process can
// take the master tens of milliseconds on a loaded machine (fork, exec,
// the wait for exec to succeed), and a loop that waited for it sampled
// nobody meanwhile, so a fast leaker grew unwatched. The start is made
// slow here for real: the test holds syscall.ForkLock for reading, which
// every fork in the process takes for writing, so the replacement's start
// cannot finish until the test lets go. While it waits, the loop must
// still answer Status, and no Started event can exist for a process that
// does not exist yet; once the lock is released the replacement starts,
// gets ready and takes over as usual.
func TestTheLoopServesWhileAWorkerIsBeingStarted(t *testing.T) {
	h := startCluster(t, Config{Workers: 1}, behaveNormally)
	old := h.waitReady(1)[0]

	release := holdForkLock(t)

	h.c.Reload()
	h.waitLog("replacing worker") // the loop is at the spawn, or past it
	answered := make(chan []WorkerStatus, 1)
	go func() { answered <- h.c.Status() }()
	select {
	case status := <-answered:
		require.Len(t, status, 1, "only the serving worker exists while the replacement's fork waits")
		assert.Equal(t, old, status[0].Pid)
		assert.Equal(t, StateServing, status[0].State)
	case <-time.After(waitLimit):
		release()
		t.Fatalf("Status unanswered for %v while a worker was being started: the loop waits on the start", waitLimit)
	}
	for pending := true; pending; { // every event the master emitted so far
		select {
		case e := <-h.events:
			h.seen = append(h.seen, e)
		default:
			pending = false
		}
	}
	assert.Equal(t, 1, h.count(Started), "a Started event for a process whose fork cannot have happened")

	release()
	started := h.waitKind(Started)
	assert.NotEqual(t, old, started.Pid)
	ready := h.waitKind(Ready)
	assert.Equal(t, started.Pid, ready.Pid)
	drained := h.waitKind(ExitedPlanned)
	assert.Equal(t, old, drained.Pid)
}

// TestAShutdownWaitsForAStartUnderWay: a start still under way when the
// shutdown begins reads the listening sockets the master hands to its
// worker; closing them under it is a data race (the race detector reports
// it), and could hand the worker whatever reused the descriptor. The
// master keeps them until the start is reported, then drains the new
// worker with the rest and returns.
func TestAShutdownWaitsForAStartUnderWay(t *testing.T) {
	h := startCluster(t, Config{Workers: 1}, behaveNormally)
	old := h.waitReady(1)[0]

	release := holdForkLock(t)

	h.c.Reload()
	h.waitLog("replacing worker")
	h.c.Stop()
	exited := h.waitKind(ExitedPlanned)
	assert.Equal(t, old, exited.Pid, "the old worker drains for the shutdown")

	release()
	started := h.waitKind(Started)
	drained := h.waitFor("the new worker's exit", func(e Event) bool {
		return e.Pid == started.Pid && (e.Kind == ExitedPlanned || e.Kind == ExitedAccidental)
	})
	assert.Equal(t, ExitedPlanned, drained.Kind, "drained for the shutdown: %v", drained.Err)
	assert.Equal(t, drain.Signal, drained.Reason)
	select {
	case err := <-h.runErr:
		h.runErr <- err
		assert.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("the master did not return")
	}
	assert.Empty(t, children(t))
}

// TestTheLoopServesWhileTwoWorkersAreBeingStarted: a second start asked
// for while a first one forks must not stop the loop either. Preparing it
// makes the worker's socket pairs, which took ForkLock for reading, and a
// reader waits behind the fork's writer: the loop stopped until the first
// fork was done. Here the first start waits on ForkLock, held by the test;
// the second is a respawn after the other worker is killed.
func TestTheLoopServesWhileTwoWorkersAreBeingStarted(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, BackoffMin: 10 * time.Millisecond}, behaveNormally)
	bySlot := map[int]int{}
	for range 2 {
		e := h.waitKind(Ready)
		bySlot[e.Worker] = e.Pid
	}

	release := holdForkLock(t)

	h.c.Reload() // slot 0 first; slot 1 waits its turn in the queue
	h.waitLog("replacing worker")
	require.NoError(t, syscall.Kill(bySlot[1], syscall.SIGKILL))
	h.waitFor("slot 1's respawn", func(e Event) bool { return e.Kind == Respawn && e.Worker == 1 })
	h.waitLogCount("starting a worker", 4) // 2 at start, the replacement, the respawn

	answered := make(chan []WorkerStatus, 1)
	go func() { answered <- h.c.Status() }()
	select {
	case status := <-answered:
		require.Len(t, status, 1, "only slot 0's worker exists while both forks wait")
		assert.Equal(t, bySlot[0], status[0].Pid)
	case <-time.After(waitLimit):
		release()
		t.Fatalf("Status unanswered for %v while two workers were being started: the loop waits on the first fork", waitLimit)
	}

	release()
	for range 2 {
		h.waitKind(Ready)
	}
}

// holdForkLock holds syscall.ForkLock for reading, which every fork in the
// process takes for writing, so that no worker can start until the
// function it returns (or the test's end, before the cluster's own
// cleanup stops the master) lets go. It may be called more than once.
func holdForkLock(t *testing.T) (release func()) {
	syscall.ForkLock.RLock()
	var unlock sync.Once
	release = func() { unlock.Do(syscall.ForkLock.RUnlock) }
	t.Cleanup(release)
	return release
}
