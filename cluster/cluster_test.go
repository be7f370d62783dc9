//go:build linux || darwin

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/loadgen"
	"github.com/memdrain/memdrain/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// harness runs a master in the test process; its workers are the test
// binary (see TestMain).
type harness struct {
	t      *testing.T
	c      *Cluster
	url    string
	events chan Event
	seen   []Event
	runErr chan error
	logs   *syncBuffer
}

type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // closed by the next Write; nil until someone waits
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wrote != nil {
		close(b.wrote)
		b.wrote = nil
	}
	return b.buf.Write(p)
}

// next returns what was written so far and a channel closed by the next
// Write.
func (b *syncBuffer) next() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wrote == nil {
		b.wrote = make(chan struct{})
	}
	return b.buf.String(), b.wrote
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startCluster runs a master on a fresh port of 127.0.0.1.
func startCluster(t *testing.T, cfg Config, behaviour string) *harness {
	t.Helper()
	ln := freeListener(t)
	cfg.Listeners = []net.Listener{ln}
	return startClusterOn(t, cfg, behaviour)
}

// startClusterOn runs a master on cfg's own Listen or Listeners.
func startClusterOn(t *testing.T, cfg Config, behaviour string) *harness {
	t.Helper()
	h := &harness{t: t, events: make(chan Event, 10000), runErr: make(chan error, 1), logs: &syncBuffer{}}
	if len(cfg.Listeners) > 0 {
		h.url = "http://" + cfg.Listeners[0].Addr().String()
	}
	cfg.WorkerEnv = append(cfg.WorkerEnv, "TEST_WORKER="+behaviour, noRaceExitSleep)
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.OnEvent = func(e Event) { h.events <- e }
	c, err := New(cfg)
	require.NoError(t, err)
	h.c = c
	go func() { h.runErr <- c.Run(func(*Worker) error { return nil }) }()
	t.Cleanup(func() {
		c.Stop()
		select {
		case <-h.runErr:
		case <-time.After(waitLimit):
			t.Error("the master did not stop")
		}
		if t.Failed() {
			t.Logf("master log:\n%s", h.logs.String())
		}
	})
	return h
}

// waitFor returns the next event that matches, keeping every event seen.
func (h *harness) waitFor(what string, match func(Event) bool) Event {
	h.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case e := <-h.events:
			h.seen = append(h.seen, e)
			if match(e) {
				return e
			}
		case err := <-h.runErr:
			h.runErr <- err
			h.t.Fatalf("the master returned (%v) while waiting for %s", err, what)
		case <-deadline:
			h.t.Fatalf("no %s within %v", what, waitLimit)
		}
	}
}

// waitSeen is waitFor for an event that may already have been seen while
// waiting for another: events of different processes come in no set
// order.
func (h *harness) waitSeen(what string, match func(Event) bool) Event {
	h.t.Helper()
	if i := slices.IndexFunc(h.seen, match); i >= 0 {
		return h.seen[i]
	}
	return h.waitFor(what, match)
}

// waitLog waits until the master's log contains s.
func (h *harness) waitLog(s string) {
	h.t.Helper()
	deadline := time.After(waitLimit)
	for {
		logs, wrote := h.logs.next()
		if strings.Contains(logs, s) {
			return
		}
		select {
		case <-wrote:
		case <-deadline:
			h.t.Fatalf("no %q in the master's log within %v", s, waitLimit)
		}
	}
}

// waitLogCount waits until the master's log contains s n times.
func (h *harness) waitLogCount(s string, n int) {
	h.t.Helper()
	deadline := time.After(waitLimit)
	for {
		logs, wrote := h.logs.next()
		if strings.Count(logs, s) >= n {
			return
		}
		select {
		case <-wrote:
		case <-deadline:
			h.t.Fatalf("%q fewer than %d times in the master's log within %v", s, n, waitLimit)
		}
	}
}

func (h *harness) waitKind(kind EventKind) Event {
	h.t.Helper()
	return h.waitFor(kind.String(), func(e Event) bool { return e.Kind == kind })
}

// waitReady waits until n workers reported ready and returns their pids.
func (h *harness) waitReady(n int) []int {
	h.t.Helper()
	var pids []int
	for range n {
		pids = append(pids, h.waitKind(Ready).Pid)
	}
	return pids
}

// count returns how many events of kind were seen so far.
func (h *harness) count(kind EventKind) int {
	n := 0
	for _, e := range h.seen {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// stop stops the master, waits for Run, and returns its error.
func (h *harness) stop() error {
	h.t.Helper()
	h.c.Stop()
	select {
	case err := <-h.runErr:
		h.runErr <- err
		for {
			select {
			case e := <-h.events:
				h.seen = append(h.seen, e)
			default:
				return err
			}
		}
	case <-time.After(waitLimit):
		h.t.Fatal("the master did not stop")
		return nil
	}
}

// children returns the pids of this process's live child processes.
func children(t *testing.T) []int {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := procParent(pid)
		if ok && ppid == self && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procParent reads a process's parent and state from /proc/<pid>/stat.
func procParent(pid int) (ppid int, state string, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	// The command name is in parentheses and may hold spaces.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	return ppid, fields[0], err == nil
}

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	if _, state, ok := procParent(pid); ok {
		return state != "Z"
	}
	return syscall.Kill(pid, 0) == nil
}

func get(url string) (pid string, err error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Worker-Pid"), nil
}

func TestSIGTERMDrainsEveryWorkerAndRunReturns(t *testing.T) {
	h := startCluster(t, Config{Workers: 2}, behaveNormally)
	h.waitReady(2)
	_, err := get(h.url + "/health")
	require.NoError(t, err)

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case err := <-h.runErr:
		h.runErr <- err
		require.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after SIGTERM")
	}
	for len(h.events) > 0 {
		h.seen = append(h.seen, <-h.events)
	}
	assert.Equal(t, 2, h.count(ExitedPlanned))
	assert.Zero(t, h.count(ExitedAccidental))
	for _, e := range h.seen {
		if e.Kind == Draining {
			assert.Equal(t, drain.Signal, e.Reason)
		}
	}
	assert.Empty(t, children(t), "no worker outlives Run")
}

func TestAKilledWorkerIsRespawnedExactlyOnce(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, BackoffMin: 10 * time.Millisecond}, behaveNormally)
	pids := h.waitReady(2)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))

	exited := h.waitKind(ExitedAccidental)
	assert.Equal(t, pids[0], exited.Pid)
	assert.ErrorContains(t, exited.Err, "killed")
	respawned := h.waitKind(Ready)
	assert.NotContains(t, pids, respawned.Pid)
	assert.ElementsMatch(t, []int{pids[1], respawned.Pid}, children(t), "exactly the survivor and one replacement run")

	// A planned replacement causes no extra worker either.
	h.c.Reload()
	for range 2 {
		h.waitFor("a planned exit after reload", func(e Event) bool { return e.Kind == ExitedPlanned && e.Reason == drain.Reload })
	}
	require.NoError(t, h.stop())
	assert.Equal(t, 2+1+2, h.count(Started), "two at start, one respawn, two reload replacements")
	assert.Equal(t, 1, h.count(ExitedAccidental))
	assert.Equal(t, 1, h.count(Respawn))
}

func TestAHungDrainIsKilledAtItsDeadline(t *testing.T) {
	h := startCluster(t, Config{Workers: 1, DrainTimeout: 200 * time.Millisecond, KillGrace: 100 * time.Millisecond}, ignoreDrain)
	old := h.waitReady(1)[0]
	h.c.Reload()
	h.waitFor("the replacement", func(e Event) bool { return e.Kind == Ready && e.Pid != old })
	draining := h.waitKind(Draining)
	assert.Equal(t, old, draining.Pid)
	killed := h.waitKind(Killed)
	assert.Equal(t, old, killed.Pid)
	exited := h.waitKind(ExitedPlanned)
	assert.Equal(t, old, exited.Pid)
	assert.GreaterOrEqual(t, exited.Duration, 300*time.Millisecond, "killed no earlier than DrainTimeout + KillGrace")
	assert.Zero(t, h.count(ExitedAccidental), "a killed draining worker is still a planned exit: no respawn")
}

func TestAReplacementThatNeverGetsReadyIsKilledAndTheOldWorkerServesOn(t *testing.T) {
	cfg := Config{
		Workers:      1,
		ReadyTimeout: 500 * time.Millisecond,
		BackoffMin:   time.Minute, // no retry within the test
		BackoffMax:   time.Minute,
		WorkerEnv:    []string{testWorkerMarkerDir + "=" + t.TempDir()},
	}
	h := startCluster(t, cfg, firstOnlyGetsReady)
	old := h.waitReady(1)[0]
	h.c.Reload()
	started := h.waitFor("the replacement's start", func(e Event) bool { return e.Kind == Started && e.Pid != old })
	timeout := h.waitKind(ReadyTimeout)
	assert.Equal(t, started.Pid, timeout.Pid)
	exited := h.waitKind(ExitedAccidental)
	assert.Equal(t, started.Pid, exited.Pid)

	pid, err := get(h.url + "/health")
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(old), pid, "the old worker still serves")
	status := h.c.Status()
	require.Len(t, status, 1)
	assert.Equal(t, old, status[0].Pid)
	assert.Equal(t, StateServing, status[0].State)
	assert.Zero(t, h.count(Draining), "the old worker was never drained")
}

func TestACrashLoopMakesTheMasterGiveUp(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, CrashLimit: 3, CrashWindow: time.Minute, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond}, crashAtOnce)
	select {
	case err := <-h.runErr:
		h.runErr <- err
		require.Error(t, err)
		assert.Contains(t, err.Error(), "gave up after 3 worker crashes")
		assert.Contains(t, err.Error(), "CrashLimit 3")
	case <-time.After(waitLimit):
		t.Fatal("the master never gave up")
	}
	for len(h.events) > 0 {
		h.seen = append(h.seen, <-h.events)
	}
	assert.Equal(t, 1, h.count(GiveUp))
	assert.Empty(t, children(t))
}

func TestKillingTheMasterTakesItsWorkersWithIt(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	ln := freeListener(t)
	addr := ln.Addr().String()
	ln.Close() // the master opens it itself
	master := exec.Command(exe, "-test.run=^$")
	master.Env = append(os.Environ(), "TEST_MASTER="+addr, noRaceExitSleep)
	stdout, err := master.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, master.Start())
	defer master.Wait()
	defer master.Process.Kill()

	lines := bufio.NewScanner(stdout)
	var workers []int
	for len(workers) < 2 && lines.Scan() {
		if pid, ok := strings.CutPrefix(lines.Text(), "ready "); ok {
			n, err := strconv.Atoi(pid)
			require.NoError(t, err)
			workers = append(workers, n)
		}
	}
	require.Len(t, workers, 2, "both workers reported ready")
	require.NoError(t, master.Process.Signal(syscall.SIGKILL))
	master.Wait()

	// The bound: every worker gone within 2 s of the master's death.
	assert.Eventually(t, func() bool { return !alive(workers[0]) && !alive(workers[1]) }, 2*time.Second, 10*time.Millisecond,
		"workers %v outlived their master", workers)
	for _, pid := range workers {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL) // never leave an orphan behind
		}
	}
}

func TestSIGHUPReplacesEveryWorkerOneAtATimeWithoutLosingARequest(t *testing.T) {
	h := startCluster(t, Config{Workers: 2}, behaveNormally)
	first := h.waitReady(2)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan loadgen.Result, 2)
	for _, keepAlive := range []bool{true, false} {
		go func() {
			results <- loadgen.Run(ctx, loadgen.Config{URL: h.url + "/work?ms=2", Clients: 4, KeepAlive: keepAlive, Timeout: 10 * time.Second})
		}()
	}
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	starting, most := 0, 0
	for planned := 0; planned < 2; {
		e := h.waitFor("the reload", func(e Event) bool {
			return e.Kind == Started || e.Kind == Ready || e.Kind == ExitedPlanned || e.Kind == ExitedAccidental
		})
		switch e.Kind {
		case Started:
			starting++
			most = max(most, starting)
		case Ready:
			starting--
		case ExitedPlanned:
			planned++
			assert.Equal(t, drain.Reload, e.Reason)
			assert.Contains(t, first, e.Pid)
		case ExitedAccidental:
			t.Fatalf("accidental exit during reload: %v", e.Err)
		}
	}
	cancel()
	for range 2 {
		r := <-results
		assert.Zero(t, r.Failed, "%v", r)
		assert.Positive(t, r.Requests)
	}
	assert.Equal(t, 1, most, "one replacement starting at a time (MaxReplacements)")
	for _, s := range h.c.Status() {
		assert.NotContains(t, first, s.Pid, "every worker was replaced")
	}
}

// TestAWorkerThatGrowsPastTheLimitRightAfterReadyIsRecycledAsALeak: a
// worker under the limit when it reported ready, and over it at a later
// sample, grew while serving: a leak, however soon after ready, recycled at
// once. This test used to expect a config-problem, for a crossing in the
// first interval of serving was taken for start-up (a cache warming). That
// rule took every fast leak for start-up too, and backed its replacement off
// while the worker grew on, to 4.6× its limit (issue 7). A program that
// warms up should report ready once warm.
func TestAWorkerThatGrowsPastTheLimitRightAfterReadyIsRecycledAsALeak(t *testing.T) {
	cfg := Config{Workers: 1, MaxMemory: 48 << 20, CheckInterval: 2 * time.Second, BackoffMin: time.Minute, BackoffMax: time.Minute, SoftLimitRatio: -1}
	h := startCluster(t, cfg, behaveNormally)
	ready := h.waitKind(Ready)
	// Its first sample, at ready, is under the limit; no event marks it,
	// so poll the snapshot, within the usual bound.
	require.Eventually(t, func() bool {
		s := h.c.Status()
		return len(s) == 1 && s[0].Memory > 0
	}, waitLimit, 5*time.Millisecond)
	_, err := get(h.url + "/work?leak=65536") // 64 MiB, well within its first CheckInterval
	require.NoError(t, err)
	over := h.waitFor("its over-limit", func(e Event) bool { return e.Kind == OverLimit || e.Kind == ConfigProblem })
	assert.Zero(t, over.Total, "its own limit, not the budget")
	e := h.waitFor("its recycle", func(e Event) bool {
		return (e.Kind == ExitedPlanned && e.Pid == ready.Pid) || e.Kind == ConfigProblem
	})
	require.Equal(t, ExitedPlanned, e.Kind, "recycled, not backed off as a config problem: %v", e.Err)
	assert.Equal(t, drain.Memory, e.Reason)
}

func TestAWorkerOverTheLimitAtBirthIsBackedOffNotLooped(t *testing.T) {
	cfg := Config{Workers: 1, MaxMemory: 48 << 20, CheckInterval: 50 * time.Millisecond, BackoffMin: 50 * time.Millisecond, SoftLimitRatio: -1}
	h := startCluster(t, cfg, bornOverLimit)
	first := h.waitKind(ConfigProblem)
	assert.Contains(t, first.Err.Error(), "below what the program needs")
	second := h.waitKind(ConfigProblem)
	assert.Greater(t, second.Duration, first.Duration, "the backoff grows")
	assert.LessOrEqual(t, h.count(Started), 2, "no replacement started before its backoff")
	assert.Zero(t, h.count(HardLimit), "born over the limit, it serves through its backoff: draining it would leave its slot empty")
}

func TestAWorkerStartedByHandFailsClearly(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, tc := range []struct{ spec, want string }{
		{`{"id":0,"listeners":1}`, "file descriptor 3 is not the master's control socket"},
		{`not json`, "is not a worker spec from a master"},
	} {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), workerEnv+"="+tc.spec)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "the process must fail")
		assert.Contains(t, string(out), tc.want)
	}
}

// TestMemoryRecyclingUnderLoadLosesNoRequest is the promise of the package:
// workers leak under continuous load from keep-alive clients and from
// clients that open a connection per request; each passes its memory limit
// and is replaced, fork-first, several times; and not one request fails or
// has to be retried.
func TestMemoryRecyclingUnderLoadLosesNoRequest(t *testing.T) {
	const recycles = 5
	const limit = 96 << 20
	cfg := Config{Workers: 2, MaxMemory: limit, CheckInterval: 200 * time.Millisecond}
	h := startCluster(t, cfg, behaveNormally)
	h.waitReady(2)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	results := make(chan loadgen.Result, 2)
	for _, keepAlive := range []bool{true, false} {
		go func() {
			results <- loadgen.Run(ctx, loadgen.Config{URL: h.url + "/work?ms=1&leak=16", Clients: 4, KeepAlive: keepAlive})
		}()
	}
	var overLimit []Event
	for planned := 0; planned < recycles; {
		e := h.waitFor("memory recycles", func(e Event) bool {
			return e.Kind == OverLimit || e.Kind == ExitedPlanned || e.Kind == ExitedAccidental
		})
		switch e.Kind {
		case OverLimit:
			overLimit = append(overLimit, e)
		case ExitedPlanned:
			assert.Equal(t, drain.Memory, e.Reason)
			planned++
		case ExitedAccidental:
			t.Fatalf("accidental exit of pid %d: %v", e.Pid, e.Err)
		}
	}
	cancel()
	keepAlive, perRequest := <-results, <-results
	for _, r := range []loadgen.Result{keepAlive, perRequest} {
		assert.Zero(t, r.Failed, "%v", r)
		assert.Zero(t, r.Retried, "%v", r)
		assert.Positive(t, r.Requests)
	}
	var highest uint64
	for _, e := range overLimit {
		highest = max(highest, e.Memory)
	}
	t.Logf("%d recycles; %v; %v; highest sample at the crossing %.3f× the limit", recycles, keepAlive, perRequest, float64(highest)/limit)
}

// body returns the body of a GET, failing the test on any error.
func body(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	return string(b)
}

func TestTCPAndUnixListenersAreSharedByEveryWorker(t *testing.T) {
	tcp := freeListener(t)
	addr := tcp.Addr().String()
	tcp.Close() // the master opens it again, with the unix socket
	sock := filepath.Join(t.TempDir(), "memdrain.sock")
	h := startClusterOn(t, Config{Workers: 2, Listen: []string{addr, "unix:" + sock}}, behaveNormally)
	workers := h.waitReady(2)

	overUnix := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	overTCP := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	servedBy := map[string]bool{}
	for range 40 {
		for _, client := range []*http.Client{overTCP, overUnix} {
			resp, err := client.Get("http://" + addr + "/health")
			require.NoError(t, err)
			resp.Body.Close()
			servedBy[resp.Header.Get("X-Worker-Pid")] = true
		}
	}
	for pid := range servedBy {
		n, err := strconv.Atoi(pid)
		require.NoError(t, err)
		assert.Contains(t, workers, n, "only workers answer")
	}
	require.NoError(t, h.stop())
	_, err := os.Stat(sock)
	assert.True(t, os.IsNotExist(err), "the master removes its unix socket when it stops")
}

func TestMaxRequestsRecyclesAWorker(t *testing.T) {
	h := startCluster(t, Config{Workers: 1, MaxRequests: 20}, behaveNormally)
	first := h.waitReady(1)[0]
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 25 {
		body(t, client, h.url+"/health")
	}
	exited := h.waitFor("the recycle", func(e Event) bool { return e.Kind == ExitedPlanned })
	assert.Equal(t, first, exited.Pid)
	assert.Equal(t, drain.Requests, exited.Reason)
}

func TestMaxAgeRecyclesAWorker(t *testing.T) {
	h := startCluster(t, Config{Workers: 1, MaxAge: 300 * time.Millisecond, MaxAgeJitter: 100 * time.Millisecond}, behaveNormally)
	first := h.waitReady(1)[0]
	exited := h.waitFor("the recycle", func(e Event) bool { return e.Kind == ExitedPlanned })
	assert.Equal(t, first, exited.Pid)
	assert.Equal(t, drain.Age, exited.Reason)
	assert.Zero(t, h.count(ExitedAccidental))
}

func TestTotalMemoryRecyclesTheLargestWorker(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, TotalMemory: 400 << 20, CheckInterval: 50 * time.Millisecond}, behaveNormally)
	h.waitReady(2)
	// One request retains 400 MiB in whichever worker serves it.
	resp, err := http.Get(h.url + "/work?leak=409600")
	require.NoError(t, err)
	resp.Body.Close()
	fat, err := strconv.Atoi(resp.Header.Get("X-Worker-Pid"))
	require.NoError(t, err)
	over := h.waitKind(OverLimit)
	assert.Equal(t, fat, over.Pid)
	assert.Greater(t, over.Total, uint64(400<<20), "the budget's recycle says the total it saw")
	exited := h.waitFor("the recycle", func(e Event) bool { return e.Kind == ExitedPlanned })
	assert.Equal(t, fat, exited.Pid, "the largest worker is the one replaced")
	assert.Equal(t, drain.Memory, exited.Reason)
}

func TestWorkersGetAGoSoftMemoryLimitBelowTheirRecycleLimit(t *testing.T) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	h := startCluster(t, Config{Workers: 1, MaxMemory: 200 << 20}, behaveNormally)
	h.waitReady(1)
	assert.Equal(t, strconv.Itoa(200<<20*9/10), body(t, client, h.url+"/memlimit"), "90 % of MaxMemory")
	require.NoError(t, h.stop())

	h = startCluster(t, Config{Workers: 1, MaxMemory: 200 << 20, WorkerEnv: []string{"GOMEMLIMIT=50MiB"}}, behaveNormally)
	h.waitReady(1)
	assert.Equal(t, strconv.Itoa(50<<20), body(t, client, h.url+"/memlimit"), "GOMEMLIMIT wins")
}

func TestASecondStopKillsTheWorkersAtOnce(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, DrainTimeout: time.Minute}, ignoreDrain)
	h.waitReady(2)
	h.c.Stop()
	h.waitKind(Draining)
	h.waitKind(Draining)
	h.c.Stop()
	select {
	case err := <-h.runErr:
		h.runErr <- err
		require.Error(t, err)
		assert.Contains(t, err.Error(), "second signal")
	case <-time.After(waitLimit):
		t.Fatal("a second Stop did not end Run")
	}
	assert.Empty(t, children(t), "the workers were killed and reaped")
}

// TestSIGHUPPicksUpANewBinary runs a master from a copy of the test binary,
// puts a new copy at the same path, and sends SIGHUP: the replacements must
// run the new file.
func TestSIGHUPPicksUpANewBinary(t *testing.T) {
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("needs /proc")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	binary := filepath.Join(dir, "server")
	copyFile(t, exe, binary)
	ln := freeListener(t)
	addr := ln.Addr().String()
	ln.Close()
	master := exec.Command(binary, "-test.run=^$")
	master.Env = append(os.Environ(), "TEST_MASTER="+addr, noRaceExitSleep)
	stdout, err := master.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, master.Start())
	defer func() {
		master.Process.Signal(syscall.SIGTERM)
		master.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	waitLines := func(prefix string, n int) {
		for seen := 0; seen < n && lines.Scan(); {
			if strings.HasPrefix(lines.Text(), prefix) {
				seen++
			}
		}
	}
	waitLines("ready ", 2)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	before := body(t, client, "http://"+addr+"/binary")

	copyFile(t, exe, binary+".new")
	require.NoError(t, os.Rename(binary+".new", binary)) // a deploy: a new file at the same path
	require.NoError(t, master.Process.Signal(syscall.SIGHUP))
	waitLines("exited ", 2) // both old workers are gone: only replacements serve
	for range 20 {
		assert.NotEqual(t, before, body(t, client, "http://"+addr+"/binary"))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, data, 0o755))
}

// TestHandingASocketToAWorkerKeepsItNonBlocking guards against a subtle
// failure. os/exec calls Fd on every file it hands to a child, and Fd on a
// File made by net switches the descriptor to blocking mode. The mode
// belongs to the socket all workers share, so a worker accepting in a
// blocking system call could never close its listener, and its drain would
// hang.
func TestHandingASocketToAWorkerKeepsItNonBlocking(t *testing.T) {
	ln := freeListener(t)
	nonBlocking := func() bool {
		raw, err := ln.SyscallConn()
		require.NoError(t, err)
		var flags int
		require.NoError(t, raw.Control(func(fd uintptr) {
			r, _, _ := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
			flags = int(r)
		}))
		return flags&syscall.O_NONBLOCK != 0
	}
	require.True(t, nonBlocking())
	f, err := listenerFile(ln)
	require.NoError(t, err)
	defer f.Close()
	f.Fd() // what os/exec does with ExtraFiles
	assert.True(t, nonBlocking(), "the shared socket must stay non-blocking")

	// And end to end: a worker drains promptly after replacements were
	// spawned beside it (it hung for its whole drain timeout before).
	h := startClusterOn(t, Config{Workers: 2, Listeners: []net.Listener{ln}, DrainTimeout: time.Minute}, behaveNormally)
	h.waitReady(2)
	h.c.Reload()
	for range 2 {
		exited := h.waitKind(ExitedPlanned)
		assert.Less(t, exited.Duration, 30*time.Second)
	}
}

// startHeldCluster runs a cluster whose slot 0's second worker (its first
// replacement) waits at a FIFO until openGate is called.
func startHeldCluster(t *testing.T, cfg Config) (h *harness, openGate func()) {
	t.Helper()
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	require.NoError(t, syscall.Mkfifo(gate, 0o600))
	cfg.WorkerEnv = append(cfg.WorkerEnv, testWorkerMarkerDir+"="+dir, testGate+"="+gate)
	h = startCluster(t, cfg, heldSecondOfSlot0)
	return h, func() {
		opened, err := os.OpenFile(gate, os.O_WRONLY, 0) // blocks until the held worker opens it
		require.NoError(t, err)
		opened.Close()
	}
}

// TestAnOldWorkerDyingDuringItsReplacementIsNotCountedTwice kills a worker
// while its replacement is starting. The replacement takes its place with
// no extra respawn, and the count of replacements under way stays right:
// a later reload still runs one replacement at a time.
func TestAnOldWorkerDyingDuringItsReplacementIsNotCountedTwice(t *testing.T) {
	h, openGate := startHeldCluster(t, Config{Workers: 2})
	first := h.waitReady(2)
	status := h.c.Status()
	require.Len(t, status, 2)
	oldOfSlot0 := status[0].Pid

	h.c.Reload()
	h.waitFor("slot 0's replacement", func(e Event) bool { return e.Kind == Started && e.Worker == 0 })
	require.NoError(t, syscall.Kill(oldOfSlot0, syscall.SIGKILL))
	crashed := h.waitKind(ExitedAccidental)
	assert.Equal(t, oldOfSlot0, crashed.Pid)
	openGate() // lets the held replacement get ready
	h.waitFor("slot 1's reload", func(e Event) bool { return e.Kind == ExitedPlanned && e.Worker == 1 })
	assert.Zero(t, h.count(Respawn), "the replacement took the dead worker's place")

	h.c.Reload()
	starting, most := 0, 0
	for planned := 0; planned < 2; {
		e := h.waitFor("the second reload", func(e Event) bool { return e.Kind == Started || e.Kind == Ready || e.Kind == ExitedPlanned })
		switch e.Kind {
		case Started:
			starting++
			most = max(most, starting)
		case Ready:
			starting--
		default:
			planned++
		}
	}
	assert.Equal(t, 1, most, "one replacement starting at a time")
	for _, s := range h.c.Status() {
		assert.NotContains(t, first, s.Pid)
	}
}

func TestStatusReportsWhatEachWorkerServed(t *testing.T) {
	h := startCluster(t, Config{Workers: 1, CheckInterval: 20 * time.Millisecond}, behaveNormally)
	pid := h.waitReady(1)[0]
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 7 {
		body(t, client, h.url+"/health")
	}
	// Stats arrive every CheckInterval; no event marks them, so poll the
	// snapshot, within the usual bound.
	require.Eventually(t, func() bool {
		s := h.c.Status()
		return len(s) == 1 && s[0].Served == 7
	}, waitLimit, 10*time.Millisecond)
	s := h.c.Status()[0]
	assert.Equal(t, pid, s.Pid)
	assert.Equal(t, 0, s.Worker)
	assert.Equal(t, StateServing, s.State)
	assert.Zero(t, s.InFlight)
	assert.Positive(t, s.Memory, "sampled even without a limit")
	assert.False(t, s.Started.IsZero())
	assert.Zero(t, s.Restarts)
}

// TestAnAgedWorkerWaitingForItsReplacementDoesNotSpinTheMaster: once a
// worker's age is acted on, its past retirement time must not wake the
// loop again and again while its slot is busy with a replacement.
func TestAnAgedWorkerWaitingForItsReplacementDoesNotSpinTheMaster(t *testing.T) {
	now := time.Now()
	s := &slot{}
	old := &proc{slot: s, pid: 1, handoffs: newHandoffQueue(), state: StateServing, retireAt: now.Add(-time.Second), sampleAt: now.Add(time.Hour)}
	s.current = old
	s.next = &proc{slot: s, pid: 2, handoffs: newHandoffQueue(), state: StateStarting} // its replacement is starting
	m := &master{
		cfg:        Config{CheckInterval: time.Second, Sampler: memory.SamplerFunc(func(int) (uint64, error) { return 1, nil })}.withDefaults(),
		procs:      map[int]*proc{1: old, 2: s.next},
		sampleNext: time.NewTimer(time.Hour),
	}
	defer m.sampleNext.Stop()
	m.sample()
	assert.True(t, old.retireAt.IsZero(), "the retirement was acted on once")
	assert.WithinDuration(t, now.Add(time.Second), m.nextWake(now), 0, "the loop sleeps until the next regular sample")
}

// TestACrashedQueuedWorkerIsNotReplacedAgainAfterItsRespawn: a slot waiting
// in the replacement queue whose worker crashes is respawned; the stale
// queue entry must not replace the fresh worker too.
func TestACrashedQueuedWorkerIsNotReplacedAgainAfterItsRespawn(t *testing.T) {
	h, openGate := startHeldCluster(t, Config{Workers: 2, BackoffMin: time.Millisecond})
	h.waitReady(2)
	status := h.c.Status()
	require.Len(t, status, 2)
	h.c.Reload() // slot 0 replaced first (held at the gate), slot 1 queued behind it
	h.waitFor("slot 0's replacement", func(e Event) bool { return e.Kind == Started && e.Worker == 0 })
	require.NoError(t, syscall.Kill(status[1].Pid, syscall.SIGKILL))
	h.waitFor("slot 1's crash", func(e Event) bool { return e.Kind == ExitedAccidental && e.Worker == 1 })
	fresh := h.waitFor("slot 1's respawn", func(e Event) bool { return e.Kind == Ready && e.Worker == 1 })
	openGate() // lets the held replacement get ready
	h.waitFor("slot 0's old worker to exit", func(e Event) bool { return e.Kind == ExitedPlanned && e.Worker == 0 })
	require.NoError(t, h.stop())
	for _, e := range h.seen {
		if e.Kind == Draining && e.Pid == fresh.Pid {
			assert.Equal(t, drain.Signal, e.Reason, "the fresh worker is drained only at the stop")
		}
	}
}

// TestAReloadDuringAReplacementReachesThatSlotToo: a replacement spawned
// before a SIGHUP may run the old binary; it must be replaced in turn.
func TestAReloadDuringAReplacementReachesThatSlotToo(t *testing.T) {
	h, openGate := startHeldCluster(t, Config{Workers: 1})
	first := h.waitReady(1)[0]
	h.c.Reload()
	held := h.waitFor("the replacement", func(e Event) bool { return e.Kind == Started && e.Pid != first })
	h.c.Reload() // a new binary was deployed meanwhile
	openGate()   // lets the held replacement get ready
	// The third starts as the held one gets ready, without waiting for the
	// first one's drain to end.
	third := h.waitFor("a third worker", func(e Event) bool { return e.Kind == Started && e.Pid != first && e.Pid != held.Pid })
	assert.Equal(t, drain.Reload, third.Reason)
	h.waitSeen("the first worker's exit", func(e Event) bool { return e.Kind == ExitedPlanned && e.Pid == first })
	exited := h.waitSeen("the held replacement's exit", func(e Event) bool { return e.Kind == ExitedPlanned && e.Pid == held.Pid })
	assert.Equal(t, drain.Reload, exited.Reason)
}

func TestStatusIsNilWhenTheMasterIsNotRunning(t *testing.T) {
	c, err := New(Config{Workers: 1, Listeners: []net.Listener{freeListener(t)}})
	require.NoError(t, err)
	assert.Nil(t, c.Status())
}

// TestTheSoftLimitRisesOnceTheLiveHeapReachesIt: real growth past the soft
// limit makes the worker raise it to the recycle limit, rather than collect
// in vain until it is recycled.
func TestTheSoftLimitRisesOnceTheLiveHeapReachesIt(t *testing.T) {
	never := memory.SamplerFunc(func(int) (uint64, error) { return 1, nil }) // keep the worker: this test watches its soft limit
	h := startCluster(t, Config{Workers: 1, MaxMemory: 100 << 20, Sampler: never}, behaveNormally)
	h.waitReady(1)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	require.Equal(t, strconv.Itoa(90<<20), body(t, client, h.url+"/memlimit"))
	body(t, client, h.url+"/work?leak=40960") // 40 MiB live: under the soft limit
	assert.Equal(t, strconv.Itoa(90<<20), body(t, client, h.url+"/memlimit"), "garbage room left: the limit stays")
	body(t, client, h.url+"/work?leak=51200") // 90 MiB live: at the soft limit
	require.Eventually(t, func() bool {
		return body(t, client, h.url+"/memlimit") == strconv.Itoa(100<<20)
	}, waitLimit, 20*time.Millisecond, "raised to MaxMemory")
}

// TestARecycleAskedForBeforeReadyIsKept: a worker may ask to be recycled
// while it warms up; the master keeps the request until the worker is
// ready, rather than drop it.
func TestARecycleAskedForBeforeReadyIsKept(t *testing.T) {
	cfg := Config{Workers: 1, WorkerEnv: []string{testWorkerMarkerDir + "=" + t.TempDir()}}
	h := startCluster(t, cfg, asksBeforeReady)
	first := h.waitReady(1)[0]
	exited := h.waitFor("the recycle", func(e Event) bool { return e.Kind == ExitedPlanned })
	assert.Equal(t, first, exited.Pid)
	assert.Equal(t, drain.Manual, exited.Reason)
}
