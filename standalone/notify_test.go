package standalone

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Under systemd's Type=notify, a process serving with ListenAndServe says
// READY=1 once it listens, pings the watchdog, and says STOPPING=1 when
// SIGTERM starts its drain, as a cluster master does; then it exits 0.
func TestListenAndServeNotifiesSystemd(t *testing.T) {
	notify := testkit.NewNotifySocket(t)
	cmd := exec.Command(os.Args[0], childArgs...)
	cmd.Env = append(os.Environ(), childEnv+"=notify", "NOTIFY_SOCKET="+notify.Path, "WATCHDOG_USEC=20000", "WATCHDOG_PID=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	ready := notify.WaitFor("READY=1")
	status := regexp.MustCompile(`(?m)^STATUS=serving on (\S+)$`).FindStringSubmatch(ready)
	require.NotNil(t, status, "READY=1 without STATUS=serving on ADDR: %q", ready)
	addr := status[1]
	_, body, err := testkit.Get(&http.Client{Timeout: waitLimit, Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+addr)
	require.NoError(t, err, "READY=1 is sent once the listener accepts")
	assert.Equal(t, "ok", body)
	notify.WaitFor("WATCHDOG=1")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	stopping := notify.WaitFor("STOPPING=1")
	assert.Contains(t, stopping, "STATUS=draining: signal")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "the child exits 0 after its drain")
	case <-time.After(waitLimit):
		t.Fatal("the child did not exit after SIGTERM")
	}
	notify.TakeArrived()
	assert.Equal(t, []string{"READY=1", "STOPPING=1"}, notify.Lifecycle(), "messages: %q", notify.Seen)
}

// A NOTIFY_SOCKET or WATCHDOG_USEC that cannot be used is an error, and
// nothing is served: left unpinged, systemd would kill the service.
func TestListenAndServeRefusesBadSystemdVariables(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"NOTIFY_SOCKET", "relative/path", `NOTIFY_SOCKET="relative/path": accepted: an absolute path`},
		{"WATCHDOG_USEC", "10s", `WATCHDOG_USEC="10s": accepted: a positive number of microseconds`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", testkit.NewNotifySocket(t).Path)
			t.Setenv(tc.name, tc.value)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			c, err := drain.New(drain.Config{Logger: quiet})
			require.NoError(t, err)
			_, err = ListenAndServe(context.Background(), &http.Server{Handler: testkit.Tagged("never")}, c, Options{Listener: ln, Logger: quiet, Signals: []os.Signal{}})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// Without NOTIFY_SOCKET, systemd asked for nothing: a WATCHDOG_USEC that
// could not be used is not read.
func TestListenAndServeIgnoresWatchdogWithoutNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "10s")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c, err := drain.New(drain.Config{Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // drains at once: nothing to serve
	res, err := ListenAndServe(ctx, &http.Server{Handler: testkit.Tagged("never")}, c, Options{Listener: ln, Logger: quiet, Signals: []os.Signal{}})
	require.NoError(t, err)
	assert.Equal(t, drain.Manual, res.Reason)
}
