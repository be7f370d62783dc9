//go:build linux || darwin

package cluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/loadgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Faults: what the supervisor does when a deploy, a signal or a caller goes
// wrong. None of it may take a serving worker down.

// TestABadDeployNeverTakesTheServiceDown puts a binary that cannot serve
// where the workers' binary was, and reloads under load: the replacements
// fail, the reload stops with reload-failed, and the old workers serve on
// without a failed request. A good binary and a second reload then replace
// every worker as usual.
func TestABadDeployNeverTakesTheServiceDown(t *testing.T) {
	for _, tc := range []struct {
		name, script, cause string
		readyTimeout        time.Duration
	}{
		{"exits at start", exitsAtStart, "exit status 3", 0},
		{"never gets ready", "#!/bin/sh\nexec sleep 60\n", "ReadyTimeout", 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deploy, good := deployable(t)
			cfg := Config{Workers: 2, CrashLimit: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, ReadyTimeout: tc.readyTimeout}
			h := startCluster(t, cfg, behaveNormally)
			first := h.waitReady(2)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			results := make(chan loadgen.Result, 2)
			for _, keepAlive := range []bool{true, false} {
				go func() {
					results <- loadgen.Run(ctx, loadgen.Config{URL: h.url + "/work?ms=2", Clients: 2, KeepAlive: keepAlive})
				}()
			}

			deploy([]byte(tc.script))
			h.c.Reload()
			failed := h.waitKind(ReloadFailed)
			assert.ErrorContains(t, failed.Err, tc.cause)
			t.Log(failed.Err)
			assert.Zero(t, h.count(Draining), "no serving worker was drained")
			assert.Zero(t, h.count(GiveUp))
			assert.Equal(t, 3, h.count(ExitedAccidental), "CrashLimit replacements failed, then the reload stopped")
			status := h.c.Status()
			require.Len(t, status, 2)
			for _, s := range status {
				assert.Contains(t, first, s.Pid, "the old workers serve on")
				assert.Equal(t, StateServing, s.State)
			}

			deploy(good)
			h.c.Reload()
			for planned := 0; planned < 2; {
				e := h.waitFor("the second reload", func(e Event) bool { return e.Kind == ExitedPlanned || e.Kind == ExitedAccidental })
				require.Equal(t, ExitedPlanned, e.Kind, "accidental exit during the good reload: %v", e.Err)
				assert.Equal(t, drain.Reload, e.Reason)
				assert.Contains(t, first, e.Pid)
				planned++
			}
			cancel()
			for range 2 {
				r := <-results
				assert.Zero(t, r.Failed, "%v", r)
				assert.Positive(t, r.Requests)
			}
			for _, s := range h.c.Status() {
				assert.NotContains(t, first, s.Pid, "every worker was replaced")
			}
		})
	}
}

// deployable makes the masters this test starts run their workers from a
// copy of the test binary, and returns a deploy function that puts new
// contents at that path as a deploy does (a new file renamed over it), and
// the test binary's contents.
func deployable(t *testing.T) (deploy func([]byte), good []byte) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	good, err = os.ReadFile(exe)
	require.NoError(t, err)
	binary := filepath.Join(t.TempDir(), "server")
	deploy = func(data []byte) {
		require.NoError(t, os.WriteFile(binary+".new", data, 0o755))
		require.NoError(t, os.Rename(binary+".new", binary))
	}
	deploy(good)
	executable = func() (string, error) { return binary, nil }
	t.Cleanup(func() { executable = os.Executable })
	return deploy, good
}

const exitsAtStart = "#!/bin/sh\nexit 3\n"

// TestTheMasterGivesUpOnlyWhenNoWorkerServes: one slot's worker dies and
// its respawns crash (the binary on disk is broken) past CrashLimit, while
// the other worker serves. Giving up would only take that one down: the
// master keeps respawning with backoff, and the slot serves again once the
// binary is fixed.
func TestTheMasterGivesUpOnlyWhenNoWorkerServes(t *testing.T) {
	deploy, good := deployable(t)
	cfg := Config{Workers: 2, CrashLimit: 2, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	h := startCluster(t, cfg, behaveNormally)
	h.waitReady(2)
	status := h.c.Status()
	require.Len(t, status, 2)
	survivor := status[1].Pid

	deploy([]byte(exitsAtStart))
	require.NoError(t, syscall.Kill(status[0].Pid, syscall.SIGKILL))
	for h.count(ExitedAccidental) < 2*cfg.CrashLimit {
		h.waitKind(ExitedAccidental)
	}
	assert.Zero(t, h.count(GiveUp))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	pid, err := get(h.url + "/health")
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(survivor), pid, "the other worker serves on")

	deploy(good)
	h.waitFor("slot 0 serving again", func(e Event) bool { return e.Kind == Ready && e.Worker == 0 })
	body(t, client, h.url+"/health")
	assert.Zero(t, h.count(GiveUp))
	assert.Zero(t, h.count(Draining), "no serving worker was drained")
}

// heldRequest is a POST /hold that a worker is serving: its handler waits
// for the body, which the test sends when it likes.
type heldRequest struct {
	conn   net.Conn
	reader *bufio.Reader
}

func holdRequest(t *testing.T, addr string) *heldRequest {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitLimit)))
	_, err = io.WriteString(conn, "POST /hold HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	status, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 100 Continue\r\n", status, "the handler runs: the request is in flight")
	blank, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "\r\n", blank)
	return &heldRequest{conn: conn, reader: r}
}

// release sends the rest of the body and returns the response.
func (hr *heldRequest) release(t *testing.T) (status int, body string) {
	t.Helper()
	_, err := io.WriteString(hr.conn, "x")
	require.NoError(t, err)
	resp, err := http.ReadResponse(hr.reader, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestShutdownRefusesNewConnectionsAtOnce: once every worker is draining,
// nobody accepts any more, so a new connection must be refused rather than
// wait in a queue nobody reads; the requests in flight still all complete.
func TestShutdownRefusesNewConnectionsAtOnce(t *testing.T) {
	tcp := freeListener(t)
	addr := tcp.Addr().String()
	tcp.Close() // the master opens it itself
	h := startClusterOn(t, Config{Workers: 2, Listen: []string{addr}, DrainTimeout: time.Minute}, behaveNormally)
	h.waitReady(2)
	var held []*heldRequest
	for range 4 {
		held = append(held, holdRequest(t, addr))
	}

	h.c.Stop()
	h.waitKind(Draining)
	h.waitKind(Draining)
	// The workers close their listeners when their drain message arrives,
	// which no event marks: try until refused, within the usual bound. The
	// held requests keep the drain, and so the master, running meanwhile.
	var last error
	refused := func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		last = err
		return errors.Is(err, syscall.ECONNREFUSED)
	}
	require.Eventually(t, refused, waitLimit, 20*time.Millisecond, "new connections were still accepted during the shutdown (last: %v)", last)
	assert.Zero(t, h.count(ExitedPlanned), "refused while the drain was still under way")

	for _, hr := range held {
		status, body := hr.release(t)
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, "released", body)
	}
	for range 2 {
		exited := h.waitKind(ExitedPlanned)
		assert.Equal(t, drain.Signal, exited.Reason)
	}
	assert.Zero(t, h.count(ExitedAccidental))
}

// unitMaster returns a master whose loop does not run, for tests that call
// its methods one by one, and the buffer its log goes to.
func unitMaster(t *testing.T, cfg Config) (*master, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	m := &master{
		cfg:    cfg.withDefaults(),
		log:    cfg.Logger,
		events: make(chan any, 64),
		done:   make(chan struct{}),
		procs:  map[int]*proc{},
	}
	t.Cleanup(func() { close(m.done) })
	return m, logs
}

// TestACrashCancelsAPendingRetry: a slot whose failed replacement is
// waiting out its backoff, and whose worker then crashes, must have one
// retry pending, not two: the leftover one would respawn without backoff.
func TestACrashCancelsAPendingRetry(t *testing.T) {
	m, _ := unitMaster(t, Config{BackoffMin: time.Hour, BackoffMax: time.Hour})
	s := &slot{id: 0, backoff: time.Hour}
	m.slots = []*slot{s}
	now := time.Now()
	old := &proc{slot: s, pid: 1, handoffs: newHandoffQueue(), state: StateServing, started: now, readyAt: now, readyWait: time.NewTimer(time.Hour)}
	next := &proc{slot: s, pid: 2, handoffs: newHandoffQueue(), state: StateStarting, started: now, replaces: old, reason: drain.Memory, readyWait: time.NewTimer(time.Hour)}
	s.current, s.next = old, next
	m.procs[1], m.procs[2] = old, next

	m.onExit(next, errors.New("exit status 3")) // the replacement failed: retried after the backoff
	pending := s.retry
	require.NotNil(t, pending)
	m.onExit(old, errors.New("signal: killed")) // and then the worker itself crashed
	require.NotNil(t, s.retry)
	assert.False(t, pending.timer.Stop(), "the first retry was cancelled when the second was armed")
	armed := s.retry
	defer armed.timer.Stop()

	// A retry that fired just before it was cancelled still reaches the
	// loop; it must do nothing (here it would spawn a worker at once).
	m.onRetry(pending)
	assert.Same(t, armed, s.retry, "the live retry is still pending")
	assert.Nil(t, s.current)
	assert.Nil(t, s.next)
}

// TestStopIsNeverLost: Stop must reach the master however many requests
// are pending before it.
func TestStopIsNeverLost(t *testing.T) {
	c, err := New(Config{
		Workers:   1,
		Listeners: []net.Listener{freeListener(t)},
		WorkerEnv: []string{noRaceExitSleep},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	for range 8 {
		c.Reload()
	}
	c.Stop()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(func(*Worker) error { return nil }) }()
	select {
	case err := <-runErr:
		require.NoError(t, err)
	case <-time.After(waitLimit):
		c.Stop() // so the master does not outlive the test
		<-runErr
		t.Fatal("the Stop made before Run was lost")
	}
	assert.Empty(t, children(t))
}

// TestARecycleWithAnInvalidReasonIsAManualOne: a reason outside drain's
// list must not make the request vanish (and block every later one).
func TestARecycleWithAnInvalidReasonIsAManualOne(t *testing.T) {
	cfg := Config{Workers: 1, WorkerEnv: []string{testWorkerMarkerDir + "=" + t.TempDir()}}
	h := startCluster(t, cfg, asksWithBadReason)
	first := h.waitReady(1)[0]
	exited := h.waitFor("the recycle", func(e Event) bool { return e.Kind == ExitedPlanned })
	assert.Equal(t, first, exited.Pid)
	assert.Equal(t, drain.Manual, exited.Reason)
}

// TestAWorkerThatCannotBeToldToDrainGetsTheSignalTheLogNames: when the
// drain message cannot be sent, the master signals the worker instead, and
// its log must name the signal it sent.
func TestAWorkerThatCannotBeToldToDrainGetsTheSignalTheLogNames(t *testing.T) {
	m, logs := unitMaster(t, Config{DrainTimeout: time.Hour})
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	conn, workerEnd, err := socketPair(syscall.SOCK_STREAM)
	require.NoError(t, err)
	workerEnd.Close() // the worker's end is gone: the drain message cannot be sent
	defer conn.Close()
	s := &slot{}
	p := &proc{slot: s, pid: cmd.Process.Pid, handoffs: newHandoffQueue(), cmd: cmd, state: StateServing, readyWait: time.NewTimer(time.Hour)}
	p.ctrl = newLink(conn, time.Second, func(msg message, err error) { m.post(evSendFailed{p, msg, err}) })
	defer p.ctrl.close()
	s.current = p
	m.procs[p.pid] = p

	m.drainProc(p, drain.Manual)
	p.killWait.Stop()
	select {
	case ev := <-m.events:
		failed, ok := ev.(evSendFailed)
		require.True(t, ok, "the failed send reaches the loop, got %T", ev)
		m.onSendFailed(failed.p, failed.m, failed.err)
	case <-time.After(waitLimit):
		t.Fatal("the failed send never reached the loop")
	}
	_ = cmd.Wait()
	status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, status.Signaled(), "stopped by a signal: %v", cmd.ProcessState)
	assert.Equal(t, syscall.SIGTERM, status.Signal())
	assert.Contains(t, logs.String(), "SIGTERM", "the log names the signal sent")
}

// TestAWorkerReadyDuringAShutdownIsDrainedForTheShutdownsReason: after a
// give-up, every worker is drained with reason Supervisor, one that reports
// ready late included.
func TestAWorkerReadyDuringAShutdownIsDrainedForTheShutdownsReason(t *testing.T) {
	m, _ := unitMaster(t, Config{DrainTimeout: time.Hour})
	var events []Event
	m.cfg.OnEvent = func(e Event) { events = append(events, e) }
	m.shutdown(errors.New("cluster: gave up"))
	conn, workerEnd, err := socketPair(syscall.SOCK_STREAM)
	require.NoError(t, err)
	defer conn.Close()
	defer workerEnd.Close()
	s := &slot{}
	p := &proc{slot: s, pid: 1, handoffs: newHandoffQueue(), ctrl: newLink(conn, time.Second, func(message, error) {}), state: StateStarting, started: time.Now(), readyWait: time.NewTimer(time.Hour)}
	defer p.ctrl.close()
	s.current = p
	m.procs[1] = p

	m.onReady(p)
	require.NotNil(t, p.killWait)
	p.killWait.Stop()
	i := slices.IndexFunc(events, func(e Event) bool { return e.Kind == Draining })
	require.GreaterOrEqual(t, i, 0, "the late worker was drained")
	assert.Equal(t, drain.Supervisor, events[i].Reason)
}
