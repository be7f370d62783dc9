//go:build linux

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
