//go:build linux

package cluster

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startTestMaster starts cmd, a master (see testMaster), and returns its
// output, line by line. It is killed at the end of the test if still running.
func startTestMaster(t *testing.T, cmd *exec.Cmd) *bufio.Scanner {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return bufio.NewScanner(stdout)
}

// waitLines reads the master's output until n lines start with prefix,
// for at most waitLimit (the cleanup's kill then ends the read).
func waitLines(t *testing.T, lines *bufio.Scanner, prefix string, n int) {
	t.Helper()
	found := make(chan int, 1)
	go func() {
		seen := 0
		for seen < n && lines.Scan() {
			if strings.HasPrefix(lines.Text(), prefix) {
				seen++
			}
		}
		found <- seen
	}()
	select {
	case seen := <-found:
		require.Equal(t, n, seen, "the master's output ended before %d %q lines", n, prefix)
	case <-time.After(waitLimit):
		t.Fatalf("fewer than %d %q lines from the master within %v", n, prefix, waitLimit)
	}
}

func TestSystemdIsToldReadyReloadingReadyStoppingInOrder(t *testing.T) {
	notify := testkit.NewNotifySocket(t)
	exe, err := os.Executable()
	require.NoError(t, err)
	ln := freeListener(t)
	addr := ln.Addr().String()
	ln.Close() // the master opens it itself
	master := exec.Command(exe, "-test.run=^$")
	master.Env = append(os.Environ(), "TEST_MASTER="+addr, noRaceExitSleep,
		"NOTIFY_SOCKET="+notify.Path, "WATCHDOG_USEC=100000", "WATCHDOG_PID=")
	lines := startTestMaster(t, master)

	ready := notify.WaitFor("READY=1")
	assert.Contains(t, ready, "STATUS=2 workers serving", "READY=1 is sent once every worker serves")
	notify.WaitFor("WATCHDOG=1")
	waitLines(t, lines, "ready ", 2)

	require.NoError(t, master.Process.Signal(syscall.SIGHUP))
	reloading := notify.WaitFor("RELOADING=1")
	assert.Regexp(t, regexp.MustCompile(`(?m)^MONOTONIC_USEC=[0-9]+$`), reloading)
	reloaded := notify.WaitFor("READY=1")
	assert.Contains(t, reloaded, "2 recycles", "READY=1 after the reload comes once both workers were replaced")

	require.NoError(t, master.Process.Signal(syscall.SIGTERM))
	notify.WaitFor("STOPPING=1")
	require.NoError(t, master.Wait())
	notify.TakeArrived()
	assert.Equal(t, []string{"READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}, notify.Lifecycle(), "messages: %q", notify.Seen)
}

func TestSystemdSocketActivationServesThePassedSocket(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (Debian's systemd package); .ci/test installs it as root or under CI=true")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	ln := freeListener(t)
	addr := ln.Addr().String()
	ln.Close() // systemd-socket-activate opens it
	master := exec.Command(activate, "-l", addr, "--fdname=web",
		"-E", "TEST_MASTER="+activatedMaster, "-E", noRaceExitSleep, exe, "-test.run=^$")
	stderr, err := master.StderrPipe()
	require.NoError(t, err)
	lines := startTestMaster(t, master)
	// The tool says when it listens; it starts the master at the first
	// connection, which waits in the socket's queue until a worker accepts it.
	logs := bufio.NewScanner(stderr)
	for !strings.HasPrefix(logs.Text(), "Listening on ") {
		require.True(t, logs.Scan(), "systemd-socket-activate never said it listens")
	}
	go io.Copy(os.Stderr, stderr)

	client := &http.Client{Timeout: waitLimit}
	resp, err := client.Get("http://" + addr + "/env/LISTEN_FDS")
	require.NoError(t, err, "a request through the activated socket")
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "a worker must not see LISTEN_FDS")
	waitLines(t, lines, "ready ", 2)
	for range 20 {
		resp, err := client.Get("http://" + addr + "/health")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.NoError(t, master.Process.Signal(syscall.SIGTERM))
	require.NoError(t, master.Wait(), "the master exits cleanly after draining")
}

func TestSystemdMalformedWatchdogUsecStopsRun(t *testing.T) {
	notify := testkit.NewNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", notify.Path)
	t.Setenv("WATCHDOG_USEC", "10s")
	c, err := New(Config{Listeners: []net.Listener{freeListener(t)}, Workers: 1})
	require.NoError(t, err)
	err = c.Run(func(*Worker) error { return nil })
	require.Error(t, err, "left unpinged, systemd would kill the service")
	assert.Contains(t, err.Error(), `WATCHDOG_USEC="10s"`)
}
