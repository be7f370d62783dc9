//go:build linux

package main

import (
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/testkit"
)

// Under systemd's Type=notify, memdrain run says READY=1 once every worker
// serves, RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 at
// SIGTERM, in that order, and pings the watchdog; its apps do not see
// NOTIFY_SOCKET.
func TestTellsSystemdReadyReloadingStopping(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", `
const server = require('http').createServer((req, res) => {
  res.setHeader('X-Notify-Socket', String(process.env.NOTIFY_SOCKET));
  res.end('ok\n');
});
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`)
	notify := testkit.NewNotifySocket(t)
	addr := freeAddr(t)
	cmd := exec.Command(binary, "run", "--listen", addr, "--workers", "2", "--log-format", "json", "--", "node", "app.js")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.Path, "WATCHDOG_USEC=100000", "WATCHDOG_PID=")
	m := launchCmd(t, dir, cmd)

	if ready := notify.WaitFor("READY=1"); !strings.Contains(ready, "STATUS=2 workers serving") {
		t.Errorf("READY=1 came with %q; want it once both workers serve", ready)
	}
	notify.WaitFor("WATCHDOG=1")
	resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Notify-Socket"); got != "undefined" {
		t.Errorf("the app sees NOTIFY_SOCKET=%q; want it unset", got)
	}

	m.signal(t, syscall.SIGHUP)
	notify.WaitFor("RELOADING=1")
	notify.WaitFor("READY=1")
	m.signal(t, syscall.SIGTERM)
	notify.WaitFor("STOPPING=1")
	if code := m.wait(t, time.Minute); code != 0 {
		t.Errorf("exit %d after SIGTERM; want 0", code)
	}
	notify.TakeArrived()
	if want := []string{"READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}; !slices.Equal(notify.Lifecycle(), want) {
		t.Errorf("systemd was told %q; want %q (messages: %q)", notify.Lifecycle(), want, notify.Seen)
	}
}
