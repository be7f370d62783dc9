package standalone

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/logbuf"
	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/memdrain/memdrain/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childEnv names the behaviour TestListenAndServeChild runs when this test
// binary is re-executed as a child process.
const childEnv = "DRAIN_TEST_CHILD"

// TestListenAndServeChild is not a test of its own: it is the body of the
// child process that other tests start, chosen by childEnv.
func TestListenAndServeChild(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "":
		t.Skip("runs only as a child process")
	case "no-signals":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(2)
		}
		fmt.Println(ln.Addr().String())
		c, _ := drain.New(drain.Config{Logger: quiet})
		res, err := ListenAndServe(context.Background(), &http.Server{Handler: testkit.Tagged("child")}, c,
			Options{Listener: ln, Logger: quiet, Signals: []os.Signal{}})
		// Only a handled signal gets here: SIGTERM's default action ends
		// the process first.
		fmt.Println("returned:", res.Reason, err)
		os.Exit(3)
	case "activated":
		// Started by systemd-socket-activate: no Listener, and an Addr
		// that would serve elsewhere were the passed socket ignored.
		c, _ := drain.New(drain.Config{Logger: quiet})
		res, err := ListenAndServe(context.Background(), &http.Server{Addr: "127.0.0.1:0", Handler: testkit.Tagged("activated")}, c, Options{Logger: quiet})
		fmt.Println("returned:", res.Reason, err)
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	case "notify":
		// Under systemd's Type=notify, NOTIFY_SOCKET set by the test,
		// which learns the address from READY=1's STATUS=: no Listener,
		// so READY=1 must come after ListenAndServe opened its own.
		c, _ := drain.New(drain.Config{Logger: quiet})
		res, err := ListenAndServe(context.Background(), &http.Server{Addr: "127.0.0.1:0", Handler: testkit.Tagged("notify")}, c, Options{Logger: quiet})
		if err != nil {
			fmt.Println("returned:", res.Reason, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "cgroup-leak":
		leakInCgroup()
	}
}

// startChild re-executes this test binary as a child running behaviour,
// and returns it with the address it serves on.
func startChild(t *testing.T, behaviour string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], childArgs...)
	cmd.Env = append(os.Environ(), childEnv+"="+behaviour)
	return cmd, startCmd(t, cmd)
}

// childArgs make this test binary run TestListenAndServeChild only.
var childArgs = []string{"-test.run=^TestListenAndServeChild$", "-test.count=1"}

// startCmd starts cmd, a child that prints the address it serves on as its
// first line, and returns that address. The child is killed, if still
// running, when the test ends.
func startCmd(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case addr := <-lines:
		require.NotEmpty(t, addr, "the child printed no address")
		return addr
	case <-time.After(waitLimit):
		t.Fatalf("the child printed no address within %v", waitLimit)
		return ""
	}
}

// TestListenAndServeWithNoSignalsLeavesThemAlone: Signals: []os.Signal{}
// installs no handler, so SIGTERM keeps its default action and ends the
// process, as it would for a program that had not called ListenAndServe.
func TestListenAndServeWithNoSignalsLeavesThemAlone(t *testing.T) {
	cmd, addr := startChild(t, "no-signals")
	require.Eventually(t, func() bool {
		_, body, err := testkit.Get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+addr)
		return err == nil && body == "ok"
	}, waitLimit, 5*time.Millisecond, "the child must serve")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "the child must end by the signal, got %v", err)
		status, ok := exit.Sys().(syscall.WaitStatus)
		require.True(t, ok)
		assert.True(t, status.Signaled(), "ended by SIGTERM's default action, not by a handled drain: %v", exit)
		assert.Equal(t, syscall.SIGTERM, status.Signal())
	case <-time.After(waitLimit):
		t.Fatal("the child did not end after SIGTERM")
	}
}

// TestListenAndServeEndsTheDrainOnASecondSignal: the first SIGINT drains,
// the second ends the drain at once, as the cluster master kills its
// workers on a second signal. The request still in flight is abandoned.
func TestListenAndServeEndsTheDrainOnASecondSignal(t *testing.T) {
	ln := listen(t)
	c := newController(t, time.Minute)
	g := testkit.New()
	defer close(g.Open)
	done := make(chan served, 1)
	go func() {
		res, err := ListenAndServe(context.Background(), &http.Server{Handler: g}, c, Options{Listener: ln, Logger: quiet})
		done <- served{res, err}
	}()
	held := make(chan error, 1)
	go func() {
		_, _, err := testkit.Get(&http.Client{Transport: &http.Transport{}}, "http://"+ln.Addr().String())
		held <- err
	}()
	g.WaitArrivals(t, 1, waitLimit)

	self, err := os.FindProcess(os.Getpid())
	require.NoError(t, err)
	require.NoError(t, self.Signal(os.Interrupt))
	testkit.WaitClosed(t, c.Draining(), "the drain after the first SIGINT")
	assert.False(t, testkit.IsClosed(c.Done()), "the held request keeps the drain open")

	require.NoError(t, self.Signal(os.Interrupt))
	select {
	case got := <-done:
		require.NoError(t, got.err)
		assert.Equal(t, drain.Signal, got.res.Reason)
		assert.True(t, got.res.DeadlineExceeded, "the drain was cut short")
		assert.Equal(t, 1, got.res.Abandoned)
	case <-time.After(waitLimit):
		t.Fatal("ListenAndServe did not return after a second SIGINT (its drain timeout is a minute)")
	}
	assert.Error(t, <-held, "the abandoned request's connection is closed")
}

// probe answers one probe request with a new connection, as the kubelet
// does.
func probe(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, body, err := testkit.Get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+addr+path)
	require.NoError(t, err, "probe %s", path)
	return resp.StatusCode, body
}

// TestListenAndServeServesProbesThroughTheDrain: readiness turns 503 the
// moment the drain starts, while a request is still held in flight;
// liveness stays 200 until the drain ends, and the probe server closes with
// ListenAndServe.
func TestListenAndServeServesProbesThroughTheDrain(t *testing.T) {
	ln, probeLn := listen(t), listen(t)
	probeAddr := probeLn.Addr().String()
	c := newController(t, time.Minute)
	g := testkit.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan served, 1)
	go func() {
		res, err := ListenAndServe(ctx, &http.Server{Handler: g}, c,
			Options{Listener: ln, ProbeListener: probeLn, Logger: quiet, Signals: []os.Signal{}})
		done <- served{res, err}
	}()
	require.Eventually(t, func() bool {
		resp, _, err := testkit.Get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+probeAddr+"/readyz")
		return err == nil && resp.StatusCode == http.StatusOK
	}, waitLimit, 5*time.Millisecond, "readiness must answer 200 while serving")
	status, body := probe(t, probeAddr, "/livez")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "alive\n", body)
	status, _ = probe(t, probeAddr, "/elsewhere")
	assert.Equal(t, http.StatusNotFound, status)

	held := make(chan error, 1)
	go func() {
		_, _, err := testkit.Get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+ln.Addr().String())
		held <- err
	}()
	g.WaitArrivals(t, 1, waitLimit)
	cancel()
	testkit.WaitClosed(t, c.Draining(), "the drain")

	status, body = probe(t, probeAddr, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status, "not ready from the start of the drain")
	assert.Equal(t, "draining\n", body)
	status, _ = probe(t, probeAddr, "/livez")
	assert.Equal(t, http.StatusOK, status, "alive while draining")
	assert.False(t, testkit.IsClosed(c.Done()), "the held request was in flight during the probes")

	close(g.Open)
	require.NoError(t, <-held)
	select {
	case got := <-done:
		require.NoError(t, got.err)
		assert.Equal(t, drain.Manual, got.res.Reason)
		assert.False(t, got.res.DeadlineExceeded)
	case <-time.After(waitLimit):
		t.Fatal("ListenAndServe did not return after the drain")
	}
	_, err := net.DialTimeout("tcp", probeAddr, time.Second)
	assert.Error(t, err, "the probe server closes with ListenAndServe")
}

func TestListenAndServeRejectsABadProbeAddr(t *testing.T) {
	c := newController(t, time.Minute)
	ln := listen(t)
	_, err := ListenAndServe(context.Background(), &http.Server{}, c, Options{Listener: ln, Logger: quiet, ProbeAddr: "127.0.0.1:99999"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Options.ProbeAddr")
	assert.Contains(t, err.Error(), "127.0.0.1:99999")
	assert.False(t, c.IsDraining(), "nothing was served")
}

// TestListenAndServeLogsMemoryAsASize: the crossing is logged in the same
// format as the cluster's (memory=5MiB), not as a raw byte count.
func TestListenAndServeLogsMemoryAsASize(t *testing.T) {
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	c := newController(t, time.Minute)
	var samples atomic.Uint64
	grows := memory.SamplerFunc(func(int) (uint64, error) { return samples.Add(1) << 20, nil })
	opts := Options{Listener: listen(t), Logger: log, Signals: []os.Signal{},
		Watch: memory.Watch{Limit: 5 << 20, Sampler: grows, Interval: time.Millisecond}}
	res, err := ListenAndServe(context.Background(), &http.Server{Handler: testkit.Tagged("x")}, c, opts)
	require.NoError(t, err)
	require.Equal(t, drain.Memory, res.Reason)
	out := logs.String()
	assert.Contains(t, out, "memory limit passed")
	assert.Contains(t, out, "memory=5MiB")
	assert.Contains(t, out, "limit=5MiB")
	assert.NotContains(t, out, "5242880", "no raw byte counts")
}

// TestListenAndServeCountsSignalsWhateverStartedTheDrain: during a drain
// the memory limit started, the first SIGINT only lets it go on; the
// second ends it. The reason stays the one that started the drain.
func TestListenAndServeCountsSignalsWhateverStartedTheDrain(t *testing.T) {
	ln := listen(t)
	c := newController(t, time.Minute)
	logs := &logbuf.Buffer{}
	g := testkit.New()
	defer close(g.Open)
	done := make(chan served, 1)
	go func() {
		res, err := ListenAndServe(context.Background(), &http.Server{Handler: g}, c,
			Options{Listener: ln, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		done <- served{res, err}
	}()
	held := make(chan error, 1)
	go func() {
		_, _, err := testkit.Get(&http.Client{Transport: &http.Transport{}}, "http://"+ln.Addr().String())
		held <- err
	}()
	g.WaitArrivals(t, 1, waitLimit)
	c.Start(drain.Memory)

	self, err := os.FindProcess(os.Getpid())
	require.NoError(t, err)
	require.NoError(t, self.Signal(os.Interrupt))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "signal received; draining") },
		waitLimit, time.Millisecond, "the first SIGINT must be handled")
	assert.NotContains(t, logs.String(), "second signal")

	require.NoError(t, self.Signal(os.Interrupt))
	select {
	case got := <-done:
		require.NoError(t, got.err)
		assert.Equal(t, drain.Memory, got.res.Reason)
		assert.True(t, got.res.DeadlineExceeded)
		assert.Equal(t, 1, got.res.Abandoned)
	case <-time.After(waitLimit):
		t.Fatal("ListenAndServe did not return after a second SIGINT")
	}
	assert.Error(t, <-held)
	assert.Contains(t, logs.String(), "second signal received; ending the drain now")
}
