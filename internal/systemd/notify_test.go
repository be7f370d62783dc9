//go:build linux

package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const waitLimit = 10 * time.Second

// listenNotify opens a datagram socket at name (a path, or @name for the
// abstract namespace) and points NOTIFY_SOCKET at it.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	t.Setenv(NotifySocketEnv, name)
	return conn
}

func TestSendReachesAPathAndAnAbstractSocket(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		"@memdrain-test-" + strconv.Itoa(os.Getpid()),
	} {
		conn := listenNotify(t, name)
		n, err := NewNotifier()
		require.NoError(t, err)
		require.NoError(t, n.Send("READY=1\nSTATUS=up"))
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
		buf := make([]byte, 64)
		k, err := conn.Read(buf)
		require.NoError(t, err, name)
		assert.Equal(t, "READY=1\nSTATUS=up", string(buf[:k]), name)
		require.NoError(t, n.Close())
	}
}

// TestSendNeverWaitsOnAFullSocket: a systemd that reads nothing fills the
// socket's queue; Send then drops the message and says so instead of
// blocking its caller, the supervisor's loop.
func TestSendNeverWaitsOnAFullSocket(t *testing.T) {
	listenNotify(t, filepath.Join(t.TempDir(), "notify")) // never read
	n, err := NewNotifier()
	require.NoError(t, err)
	defer n.Close()
	result := make(chan error, 1)
	go func() {
		for range 1 << 20 {
			if err := n.Send("WATCHDOG=1"); err != nil {
				result <- err
				return
			}
		}
		result <- nil
	}()
	select {
	case err := <-result:
		require.Error(t, err, "a million messages fit in a socket nobody reads")
		assert.True(t, IsFull(err), "got %v", err)
	case <-time.After(waitLimit):
		t.Fatal("Send blocked on a full socket")
	}
}

func TestNoNotifySocketSendsNothing(t *testing.T) {
	t.Setenv(NotifySocketEnv, "")
	n, err := NewNotifier()
	require.NoError(t, err)
	assert.Nil(t, n)
	assert.NoError(t, n.Send("READY=1"), "a nil Notifier is a no-op")
}

func TestBadNotifySocketIsNamed(t *testing.T) {
	t.Setenv(NotifySocketEnv, "relative/notify")
	_, err := NewNotifier()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `NOTIFY_SOCKET="relative/notify"`)
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		err       string
	}{
		{"", "", 0, ""},
		{"10000000", "", 5 * time.Second, ""},
		{"10000000", strconv.Itoa(os.Getpid()), 5 * time.Second, ""},
		{"10000000", strconv.Itoa(os.Getpid() + 1), 0, ""}, // another process's watchdog
		{"10s", "", 0, `WATCHDOG_USEC="10s": accepted: a positive number of microseconds`},
		{"0", "", 0, `WATCHDOG_USEC="0"`},
		{"1000", "me", 0, `WATCHDOG_PID="me": accepted: a process id`},
	} {
		t.Setenv(WatchdogUsecEnv, c.usec)
		t.Setenv(WatchdogPidEnv, c.pid)
		got, err := WatchdogInterval()
		if c.err != "" {
			require.Error(t, err, c.usec)
			assert.Contains(t, err.Error(), c.err)
			continue
		}
		require.NoError(t, err, c.usec)
		assert.Equal(t, c.want, got, "WATCHDOG_USEC=%q WATCHDOG_PID=%q", c.usec, c.pid)
	}
}

func TestMonotonicUsecIsTheMonotonicClock(t *testing.T) {
	assert.Regexp(t, `^MONOTONIC_USEC=[0-9]+$`, MonotonicUsec())
}

func TestEnvironLeavesOutSystemdsVariables(t *testing.T) {
	t.Setenv(NotifySocketEnv, "/run/systemd/notify")
	t.Setenv(ListenFdsEnv, "1")
	t.Setenv("MEMDRAIN_TEST_KEPT", "yes")
	env := Environ()
	assert.Contains(t, env, "MEMDRAIN_TEST_KEPT=yes")
	for _, kv := range env {
		assert.NotRegexp(t, `^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID|LISTEN_PID|LISTEN_FDS|LISTEN_FDNAMES)=`, kv)
	}
}
