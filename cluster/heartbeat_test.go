//go:build linux || darwin

package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/loadgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testHeartbeat is the HeartbeatTimeout of the tests that stop a worker:
// short, so they end soon, and far above a healthy worker's answer even on
// a loaded machine under the race detector.
const testHeartbeat = time.Second

// exitOf returns the exit of pid, planned or not, seen already or waited
// for.
func (h *harness) exitOf(pid int) Event {
	h.t.Helper()
	isExit := func(e Event) bool { return e.Pid == pid && (e.Kind == ExitedPlanned || e.Kind == ExitedAccidental) }
	for _, e := range h.seen {
		if isExit(e) {
			return e
		}
	}
	return h.waitFor("the exit of "+strconv.Itoa(pid), isExit)
}

// stopProcess stops pid with SIGSTOP until the test ends. The master kills
// it; SIGCONT at the end is for a test that failed before it did.
func stopProcess(t *testing.T, pid int) {
	t.Helper()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
}

// TestAStoppedWorkerIsKilledAndReplaced stops a serving worker under load
// (SIGSTOP: it runs no more, and answers nothing). The master notices
// within HeartbeatTimeout, kills and reaps it, and a new worker takes its
// slot at once; requests go on. The requests that fail are the ones on
// connections the stopped worker had accepted: they die with it.
func TestAStoppedWorkerIsKilledAndReplaced(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, HeartbeatTimeout: testHeartbeat}, behaveNormally)
	pids := h.waitReady(2)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type labelled struct {
		keepAlive bool
		loadgen.Result
	}
	results := make(chan labelled, 2)
	var served atomic.Int64
	for _, keepAlive := range []bool{true, false} {
		go func() {
			results <- labelled{keepAlive, loadgen.Run(ctx, loadgen.Config{URL: h.url + "/work?ms=2", Clients: 2, KeepAlive: keepAlive, Timeout: waitLimit,
				OnResponse: func(o loadgen.Outcome) {
					if o.Failure == "" {
						served.Add(1)
					}
				}})}
		}()
	}
	require.Eventually(t, func() bool { return served.Load() >= 100 }, waitLimit, time.Millisecond, "the load runs")

	stopped := pids[0]
	stoppedAt := time.Now()
	stopProcess(t, stopped)
	hung := h.waitKind(Hung)
	assert.Equal(t, stopped, hung.Pid)
	t.Logf("hung %v after SIGSTOP (HeartbeatTimeout %v, a ping round %v)", hung.Time.Sub(stoppedAt).Round(time.Millisecond), testHeartbeat, testHeartbeat/4)
	require.Error(t, hung.Err)
	assert.Contains(t, hung.Err.Error(), "heartbeat unanswered")
	exited := h.exitOf(stopped)
	assert.Equal(t, ExitedPlanned, exited.Kind, "the master's kill is planned: no crash, no backoff")
	assert.False(t, alive(stopped), "killed and reaped")
	assert.NotContains(t, children(t), stopped)
	fresh := h.waitFor("the slot's new worker", func(e Event) bool { return e.Kind == Ready && e.Worker == hung.Worker })

	atFresh := served.Load()
	require.Eventually(t, func() bool { return served.Load() >= atFresh+100 }, waitLimit, time.Millisecond, "requests go on")
	cancel()
	for range 2 {
		r := <-results
		assert.Positive(t, r.Requests)
		// Failures here are the requests in flight on the stopped worker's
		// connections, which die with it (one at most per client).
		t.Logf("through the stop, keep-alive %v: %v", r.keepAlive, r.Result)
	}
	status := h.c.Status()
	require.Len(t, status, 2)
	assert.ElementsMatch(t, []int{pids[1], fresh.Pid}, []int{status[0].Pid, status[1].Pid})
	for _, s := range status {
		assert.Equal(t, StateServing, s.State)
	}
	assert.Zero(t, h.count(ExitedAccidental))
	assert.Zero(t, h.count(Respawn), "respawned at once, without backoff")
	assert.Zero(t, h.count(GiveUp))
}

// TestAWorkerWhoseHealthFailsIsReplaced: the worker's process runs, but
// its program says it is stuck; the master treats it as hung.
func TestAWorkerWhoseHealthFailsIsReplaced(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Workers: 1, HeartbeatTimeout: testHeartbeat, WorkerEnv: []string{testWorkerMarkerDir + "=" + dir}}
	h := startCluster(t, cfg, unhealthyOnMarker)
	sick := h.waitReady(1)[0]
	require.NoError(t, os.WriteFile(filepath.Join(dir, unhealthyMarker(sick)), nil, 0o644))

	hung := h.waitKind(Hung)
	assert.Equal(t, sick, hung.Pid)
	require.Error(t, hung.Err)
	assert.Contains(t, hung.Err.Error(), "Config.Health")
	assert.Contains(t, hung.Err.Error(), errPoolDeadlocked.Error())
	fresh := h.waitFor("the new worker", func(e Event) bool { return e.Kind == Ready && e.Pid != sick })
	h.exitOf(sick)
	assert.False(t, alive(sick))
	for range 5 {
		pid, err := get(h.url + "/health")
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(fresh.Pid), pid)
	}
	assert.Equal(t, 1, h.count(Hung), "the new worker is healthy")
}

// TestAStoppedWorkerDoesNotHoldUpTheMaster: with one worker stopped, the
// master still answers Status and recycles the other worker. Before the
// heartbeat, the stopped worker, told to drain, held the replacement
// budget until DrainTimeout + KillGrace.
func TestAStoppedWorkerDoesNotHoldUpTheMaster(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, DrainTimeout: time.Minute, HeartbeatTimeout: testHeartbeat}, behaveNormally)
	h.waitReady(2)
	status := h.c.Status()
	require.Len(t, status, 2)
	stopped, other := status[0].Pid, status[1].Pid
	stopProcess(t, stopped)

	h.c.Reload()
	answered := make(chan []WorkerStatus, 1)
	go func() { answered <- h.c.Status() }()
	select {
	case s := <-answered:
		assert.NotEmpty(t, s)
	case <-time.After(waitLimit):
		t.Fatal("Status did not answer while a worker was stopped")
	}
	exited := h.waitFor("the other worker's recycle", func(e Event) bool { return e.Kind == ExitedPlanned && e.Pid == other })
	assert.Equal(t, drain.Reload, exited.Reason)
	assert.Equal(t, ExitedPlanned, h.exitOf(stopped).Kind)
	assert.False(t, alive(stopped))
	assert.True(t, slices.ContainsFunc(h.seen, func(e Event) bool { return e.Kind == Hung && e.Pid == stopped }), "killed as hung")
}

// TestSendingToAWorkerThatDoesNotReadNeverBlocks: the master's sends to a
// worker that reads nothing return at once, however many; past the queue
// they report the backlog. A send that waited on the socket would block
// once the socket's buffers filled.
func TestSendingToAWorkerThatDoesNotReadNeverBlocks(t *testing.T) {
	conn, workerEnd, err := socketPair(syscall.SOCK_STREAM)
	require.NoError(t, err)
	defer workerEnd.Close()
	l := newLink(conn, time.Minute, func(message, error) {})
	defer l.close()

	const sends = 100_000 // megabytes: far more than the socket buffers hold
	var backlog, other atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range sends {
			switch err := l.send(message{Type: msgPing, Seq: uint64(i + 1)}); {
			case errors.Is(err, errBacklog):
				backlog.Add(1)
			case err != nil:
				other.Add(1)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		l.close() // unblocks the sender, for goleak
		<-done
		t.Fatal("a send waited on the worker")
	}
	assert.Positive(t, backlog.Load(), "the queue filled, and send said so")
	assert.Zero(t, other.Load())
}

// TestCheckHealth: what a worker makes of Config.Health's outcomes.
func TestCheckHealth(t *testing.T) {
	assert.NoError(t, checkHealth(nil, time.Second), "no Health: healthy")
	assert.NoError(t, checkHealth(func(context.Context) error { return nil }, time.Second))

	err := checkHealth(func(context.Context) error { return errPoolDeadlocked }, time.Second)
	assert.ErrorIs(t, err, errPoolDeadlocked)
	assert.ErrorContains(t, err, "Config.Health: ")

	err = checkHealth(func(context.Context) error { panic("nil map") }, time.Second)
	assert.ErrorContains(t, err, "Config.Health panicked: nil map", "a panic is a failure, not a crash")

	err = checkHealth(func(ctx context.Context) error {
		_, bounded := ctx.Deadline()
		assert.True(t, bounded, "the context has a deadline")
		<-ctx.Done() // a check that would never end on its own
		return ctx.Err()
	}, time.Millisecond)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestALineThatIsNotAMessageIsSkipped: one bad line from a worker must not
// end the master's reading of every later one.
func TestALineThatIsNotAMessageIsSkipped(t *testing.T) {
	conn, workerEnd, err := socketPair(syscall.SOCK_STREAM)
	require.NoError(t, err)
	defer conn.Close()
	worker, err := net.FileConn(workerEnd)
	workerEnd.Close()
	require.NoError(t, err)
	defer worker.Close()
	_, err = io.WriteString(worker, "not json\n{\"type\":\"ready\"}\n")
	require.NoError(t, err)
	m, err := newChannel(conn).receive()
	require.NoError(t, err)
	assert.Equal(t, msgReady, m.Type)
	assert.LessOrEqual(t, len(cutHealthError(strings.Repeat("x", 1<<20))), maxHealthError+len("…"))
}
