//go:build linux

package standalone

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startActivated runs this test binary as the "activated" child under
// systemd-socket-activate, listening on addrs, and returns it and its
// output, once the tool listens. The tool starts the child at the first
// connection.
func startActivated(t *testing.T, addrs ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (Debian's systemd package); .ci/test installs it as root or under CI=true")
	}
	var args []string
	for _, addr := range addrs {
		args = append(args, "-l", addr)
	}
	args = append(args, "-E", childEnv+"=activated", os.Args[0], "-test.run=^TestListenAndServeChild$", "-test.count=1")
	cmd := exec.Command(activate, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	logs := bufio.NewScanner(stderr)
	for listening := 0; listening < len(addrs); {
		require.True(t, logs.Scan(), "systemd-socket-activate stopped before it listened on %v", addrs)
		if strings.HasPrefix(logs.Text(), "Listening on ") {
			listening++
		}
	}
	go io.Copy(os.Stderr, stderr)
	return cmd, bufio.NewScanner(stdout)
}

// nextLine returns the child's next line of output, failing the test after
// waitLimit (the cleanup's kill then ends the read).
func nextLine(t *testing.T, out *bufio.Scanner) string {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		out.Scan()
		line <- out.Text()
	}()
	select {
	case l := <-line:
		return l
	case <-time.After(waitLimit):
		t.Fatalf("the child printed nothing within %v", waitLimit)
		return ""
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestListenAndServeServesTheSocketSystemdPassed(t *testing.T) {
	addr := freeAddr(t)
	cmd, out := startActivated(t, addr)
	client := &http.Client{Timeout: waitLimit}
	for range 5 {
		resp, body, err := testkit.Get(client, "http://"+addr+"/")
		require.NoError(t, err, "a request through the activated socket")
		assert.Equal(t, "activated", resp.Header.Get("X-Served-By"))
		assert.Equal(t, "ok", body)
	}
	client.CloseIdleConnections()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, "returned: signal <nil>", nextLine(t, out))
	require.NoError(t, cmd.Wait())
}

func TestListenAndServeRefusesTwoSocketsFromSystemd(t *testing.T) {
	addr := freeAddr(t)
	cmd, out := startActivated(t, addr, freeAddr(t))
	conn, err := net.Dial("tcp", addr) // starts the child
	require.NoError(t, err)
	defer conn.Close()
	line := nextLine(t, out)
	assert.Contains(t, line, "systemd passed 2 sockets")
	assert.Contains(t, line, "LISTEN_FDS=2")
	assert.Error(t, cmd.Wait())
}
