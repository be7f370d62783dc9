//go:build linux

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/loadgen"
)

// memdrain serves every --listen: a unix socket beside TCP, and HTTP/2
// without TLS (prior knowledge) beside HTTP/1.1; the socket's file is
// removed at shutdown.
func TestListensOnUnixSocketAndH2C(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", versioned("1"))
	socket := filepath.Join(dir, "memdrain.sock")
	m := start(t, dir, []string{"--workers", "1", "--listen", "unix:" + socket}, "node", "app.js")
	m.waitReady(t, 1)

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://memdrain/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("over the unix socket: %s %q; want 200 \"ok\\n\"", resp.Status, body)
	}

	r := loadgen.Run(ctxFor(t, 10*time.Second), loadgen.Config{URL: "http://" + m.addr + "/", Clients: 2, PerClient: 10, HTTP2: true,
		OnResponse: func(o loadgen.Outcome) {
			if o.Proto != "HTTP/2.0" {
				t.Errorf("spoken: %q; want HTTP/2.0", o.Proto)
			}
		}})
	if r.Requests != 20 || r.Failed != 0 {
		t.Errorf("h2c: %v; want 20 requests, none failed", r)
	}
	m.stop(t)
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("the socket file after shutdown: %v; want it removed", err)
	}
}

// Under systemd's socket activation, memdrain serves the socket systemd
// passed instead of opening --listen's default, and the apps never see
// systemd's variables: the real systemd-socket-activate passes it.
func TestServesTheSocketSystemdPassed(t *testing.T) {
	need(t, "node")
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (Debian's systemd package); .ci/test installs it as root or under CI=true")
	}
	dir := writeApp(t, "app.js", `
const server = require('http').createServer((req, res) => {
  res.setHeader('X-Listen-Fds', String(process.env.LISTEN_FDS));
  res.end('ok\n');
});
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`)
	addr := freeAddr(t)
	m := launchCmd(t, dir, exec.Command(activate, "-l", addr, binary, "run", "--workers", "1", "--log-format", "json", "--", "node", "app.js"))
	m.waitUntil(t, 30*time.Second, "systemd-socket-activate listening", func(_ []logLine, text string) bool {
		return strings.Contains(text, "Listening on "+addr)
	})
	// systemd-socket-activate starts memdrain on the first connection; the
	// request waits in memdrain's queue until the worker is ready.
	resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Listen-Fds") != "undefined" {
		t.Errorf("through the passed socket: %s, the app's LISTEN_FDS %q; want 200 from an app that does not see it", resp.Status, resp.Header.Get("X-Listen-Fds"))
	}
	m.waitUntil(t, 30*time.Second, "the listening line names the passed socket", func(_ []logLine, text string) bool {
		return strings.Contains(text, `"msg":"memdrain listening","listen":"`+addr+`"`)
	})
	m.signal(t, syscall.SIGTERM)
	if code := m.wait(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM; want 0", code)
	}
}
