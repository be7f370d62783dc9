//go:build linux

package cluster

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// notifySocket is a unixgram socket standing in for systemd's
// NOTIFY_SOCKET: every datagram it receives arrives on msgs.
type notifySocket struct {
	t    *testing.T
	path string
	msgs chan string
	seen []string // every message taken from msgs, in order
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	n := &notifySocket{t: t, path: path, msgs: make(chan string, 1000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case n.msgs <- string(buf[:k]):
			default: // the test stopped reading; the master must not care
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return n
}

// waitFor returns the next message that contains field (a line such as
// "READY=1"), keeping every message seen.
func (n *notifySocket) waitFor(field string) string {
	n.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case msg := <-n.msgs:
			n.seen = append(n.seen, msg)
			if hasField(msg, field) {
				return msg
			}
		case <-deadline:
			n.t.Fatalf("no %s from the master within %v; got %q", field, waitLimit, n.seen)
		}
	}
}

func hasField(msg, field string) bool {
	for _, line := range strings.Split(msg, "\n") {
		if line == field {
			return true
		}
	}
	return false
}

// lifecycle returns the READY, RELOADING and STOPPING messages seen, in order.
func (n *notifySocket) lifecycle() []string {
	var out []string
	for _, msg := range n.seen {
		for _, f := range []string{"READY=1", "RELOADING=1", "STOPPING=1"} {
			if hasField(msg, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

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
	notify := newNotifySocket(t)
	exe, err := os.Executable()
	require.NoError(t, err)
	ln := freeListener(t)
	addr := ln.Addr().String()
	ln.Close() // the master opens it itself
	master := exec.Command(exe, "-test.run=^$")
	master.Env = append(os.Environ(), "TEST_MASTER="+addr, noRaceExitSleep,
		"NOTIFY_SOCKET="+notify.path, "WATCHDOG_USEC=100000", "WATCHDOG_PID=")
	lines := startTestMaster(t, master)

	ready := notify.waitFor("READY=1")
	assert.Contains(t, ready, "STATUS=2 workers serving", "READY=1 is sent once every worker serves")
	notify.waitFor("WATCHDOG=1")
	waitLines(t, lines, "ready ", 2)

	require.NoError(t, master.Process.Signal(syscall.SIGHUP))
	reloading := notify.waitFor("RELOADING=1")
	assert.Regexp(t, regexp.MustCompile(`(?m)^MONOTONIC_USEC=[0-9]+$`), reloading)
	reloaded := notify.waitFor("READY=1")
	assert.Contains(t, reloaded, "2 recycles", "READY=1 after the reload comes once both workers were replaced")

	require.NoError(t, master.Process.Signal(syscall.SIGTERM))
	notify.waitFor("STOPPING=1")
	require.NoError(t, master.Wait())
	for len(notify.msgs) > 0 {
		notify.seen = append(notify.seen, <-notify.msgs)
	}
	assert.Equal(t, []string{"READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}, notify.lifecycle(), "messages: %q", notify.seen)
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
	notify := newNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", notify.path)
	t.Setenv("WATCHDOG_USEC", "10s")
	c, err := New(Config{Listeners: []net.Listener{freeListener(t)}, Workers: 1})
	require.NoError(t, err)
	err = c.Run(func(*Worker) error { return nil })
	require.Error(t, err, "left unpinged, systemd would kill the service")
	assert.Contains(t, err.Error(), `WATCHDOG_USEC="10s"`)
}
