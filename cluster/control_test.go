//go:build linux || darwin

package cluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// controlledMaster is a re-executed test master with a control socket, and
// the lines it prints.
type controlledMaster struct {
	cmd   *exec.Cmd
	lines chan string
	sock  string
}

func startControlledMaster(t *testing.T, sock string) *controlledMaster {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	ln := freeListener(t)
	addr := ln.Addr().String()
	ln.Close() // the master opens it itself
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "TEST_MASTER="+addr, testControl+"="+sock, noRaceExitSleep)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	m := &controlledMaster{cmd: cmd, lines: make(chan string, 64), sock: sock}
	go func() {
		defer close(m.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			m.lines <- s.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range m.lines {
		}
		cmd.Wait()
	})
	return m
}

// next returns the next line with prefix, the words after it.
func (m *controlledMaster) next(t *testing.T, prefix string) []string {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case line, ok := <-m.lines:
			require.True(t, ok, "the master exited before printing %q", prefix)
			if rest, found := strings.CutPrefix(line, prefix+" "); found {
				return strings.Fields(rest)
			}
		case <-timeout:
			t.Fatalf("no %q line from the master within %v", prefix, waitLimit)
		}
	}
}

func (m *controlledMaster) nextPid(t *testing.T, prefix string) int {
	t.Helper()
	pid, err := strconv.Atoi(m.next(t, prefix)[0])
	require.NoError(t, err)
	return pid
}

func (m *controlledMaster) call(t *testing.T, req ControlRequest) ControlReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	reply, err := Control(ctx, m.sock, req)
	require.NoError(t, err)
	return reply
}

func slotPids(st *ControlStatus, state WorkerState) map[int]int {
	pids := map[int]int{}
	for _, p := range st.Processes {
		if p.State == state {
			pids[p.Worker] = p.Pid
		}
	}
	return pids
}

func TestControlSocketStatusRecycleReloadStop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	// A stale socket, as a master killed with SIGKILL leaves: replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	stale.SetUnlinkOnClose(false)
	stale.Close()

	m := startControlledMaster(t, sock)
	first := map[int]bool{m.nextPid(t, "ready"): true, m.nextPid(t, "ready"): true}

	info, err := os.Lstat(sock)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), "the control socket's mode")
	assert.NotZero(t, info.Mode()&fs.ModeSocket)

	reply := m.call(t, ControlRequest{Cmd: "status"})
	require.Empty(t, reply.Error)
	require.NotNil(t, reply.Status)
	assert.Equal(t, m.cmd.Process.Pid, reply.Status.Pid)
	assert.Equal(t, 2, reply.Status.Workers)
	serving := slotPids(reply.Status, StateServing)
	require.Len(t, serving, 2)
	for _, pid := range serving {
		assert.True(t, first[pid], "status names worker %d, which the master did not report ready", pid)
	}

	bad := 5
	reply = m.call(t, ControlRequest{Cmd: "recycle", Worker: &bad})
	assert.Contains(t, reply.Error, "no worker slot 5; accepted: a slot from 0 to 1")
	reply = m.call(t, ControlRequest{Cmd: "restart"})
	assert.Contains(t, reply.Error, `unknown cmd "restart"`)

	zero := 0
	reply = m.call(t, ControlRequest{Cmd: "recycle", Worker: &zero})
	require.Empty(t, reply.Error)
	fresh := m.nextPid(t, "ready")
	assert.Equal(t, []string{strconv.Itoa(serving[0]), "manual"}, m.next(t, "draining"), "slot 0's worker drains, for manual")
	assert.Equal(t, serving[0], m.nextPid(t, "exited"))
	reply = m.call(t, ControlRequest{Cmd: "status"})
	require.NotNil(t, reply.Status)
	now := slotPids(reply.Status, StateServing)
	assert.Equal(t, fresh, now[0], "slot 0 is served by the replacement")
	assert.Equal(t, serving[1], now[1], "slot 1 untouched")
	for _, p := range reply.Status.Processes {
		if p.Pid == fresh {
			assert.Equal(t, drain.Manual, p.Reason)
		}
	}

	reply = m.call(t, ControlRequest{Cmd: "reload"})
	require.Empty(t, reply.Error)
	for range 2 {
		assert.Equal(t, "reload", m.next(t, "draining")[1])
	}

	reply = m.call(t, ControlRequest{Cmd: "stop"})
	require.Empty(t, reply.Error)
	done := make(chan error, 1)
	go func() {
		for range m.lines {
		}
		done <- m.cmd.Wait()
	}()
	select {
	case err := <-done:
		require.NoError(t, err, "the master's Run returned an error")
	case <-time.After(waitLimit):
		t.Fatal("stop over the control socket did not end Run")
	}
	_, err = os.Lstat(sock)
	assert.True(t, errors.Is(err, fs.ErrNotExist), "the control socket outlived Run: %v", err)
}

func TestControlSocketRefusesALiveSocketAndAnotherUsersFile(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	require.NoError(t, err)
	defer ln.Close()
	_, err = openControl(live)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "another master listens there")

	regular := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(regular, nil, 0o600))
	_, err = openControl(regular)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not a socket")

	if os.Getuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	require.NoError(t, os.Chown(regular, 65534, 65534))
	_, err = openControl(regular)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "owned by uid 65534")
}

func TestControlSocketRefusesAPeerOfAnotherUser(t *testing.T) {
	if runtime.GOOS != "linux" || os.Getuid() != 0 {
		t.Skip("needs Linux (SO_PEERCRED) and root, to connect as another user")
	}
	// The system's python3: one under root's home (pyenv) cannot be run
	// by another user.
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs /usr/bin/python3, as the client of another user")
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir's are 0700
		require.NoError(t, os.Chmod(d, 0o777))
	}
	sock := filepath.Join(dir, "control.sock")
	ln, err := openControl(sock)
	require.NoError(t, err)
	// Open to all, as a mistaken chmod would leave it: the peer check
	// must still refuse.
	require.NoError(t, os.Chmod(sock, 0o666))
	c := &Cluster{cfg: Config{Workers: 1}}
	m := &master{log: slog.New(slog.NewTextHandler(io.Discard, nil)), done: make(chan struct{}), events: make(chan any)}
	ctl := c.serveControl(m, ln)
	defer ctl.close()

	client := exec.Command(python, "-c", `import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"cmd":"stop"}\n')
print(s.makefile().readline())`, sock)
	client.Dir = "/"
	client.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := client.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "refused: peer uid 65534 is not this master's (uid 0)")
	assert.Zero(t, c.stops.Load(), "a refused peer's stop reached the master")
}
