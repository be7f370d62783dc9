//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streams serves a server-sent event stream that ends once the file
// "end" exists in its directory, an Upgrade tunnel that echoes, and an
// upload counter.
const streams = `
const http = require('http');
const fs = require('fs');
const server = http.createServer((req, res) => {
  if (req.url === '/events') {
    res.writeHead(200, {'Content-Type': 'text/event-stream'});
    let i = 0;
    const t = setInterval(() => {
      if (fs.existsSync('end')) { clearInterval(t); res.end('data: end\n\n'); return; }
      res.write('data: ' + (i++) + '\n\n');
    }, 20);
    return;
  }
  if (req.url === '/upload') {
    let n = 0;
    req.on('data', (c) => { n += c.length; });
    req.on('end', () => res.end(String(n)));
    return;
  }
  res.end('ok\n');
});
server.on('upgrade', (req, socket) => {
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
  socket.on('data', (d) => socket.write(d));
  socket.on('end', () => socket.end()); // an http server's sockets allow half-open ones
});
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`

// recycleOne makes memdrain (one worker, --max-requests 3) replace its
// worker, and waits until the old one, pid, is draining.
func recycleOne(t *testing.T, m *instance, pid int) {
	t.Helper()
	for range 3 {
		resp, err := http.Get("http://" + m.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	m.waitUntil(t, 30*time.Second, "the worker draining", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool { return l.Msg == "draining" && l.Pid == pid }) == 1
	})
}

func exitedPlanned(m *instance, pid int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return count(m.logs, func(l logLine) bool { return l.Msg == "exited planned" && l.Pid == pid })
}

// A server-sent event stream holds its worker's drain, and ends whole.
func TestEventStreamThroughRecycle(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", streams)
	m := start(t, dir, []string{"--workers", "1", "--max-requests", "3"}, "node", "app.js")
	pid := m.waitReady(t, 1)[0]
	resp, err := http.Get("http://" + m.addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	if _, err := events.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	recycleOne(t, m, pid)
	if n := exitedPlanned(m, pid); n != 0 {
		t.Fatal("the worker exited with its stream open")
	}
	if err := os.WriteFile(filepath.Join(dir, "end"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(events)
	if err != nil || !strings.HasSuffix(string(rest), "data: end\n\n") {
		t.Fatalf("the stream ended with %q, %v; want its last event", lastBytes(rest), err)
	}
	m.waitUntil(t, 30*time.Second, "the old worker's exit", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool { return l.Msg == "exited planned" && l.Pid == pid }) == 1
	})
	m.stop(t)
}

func lastBytes(b []byte) string {
	if len(b) > 40 {
		b = b[len(b)-40:]
	}
	return string(b)
}

// An Upgrade tunnel (a websocket's) holds its worker's drain, and carries
// data through it.
func TestTunnelThroughRecycle(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", streams)
	m := start(t, dir, []string{"--workers", "1", "--max-requests", "3"}, "node", "app.js")
	pid := m.waitReady(t, 1)[0]
	conn, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /tunnel HTTP/1.1\r\nHost: memdrain\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v; want 101", resp, err)
	}
	echo := func(text string) {
		t.Helper()
		if _, err := io.WriteString(conn, text); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(text))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != text {
			t.Fatalf("echo: %q, %v; want %q", got, err, text)
		}
	}
	echo("before")
	recycleOne(t, m, pid)
	echo("during the drain")
	if n := exitedPlanned(m, pid); n != 0 {
		t.Fatal("the worker exited with its tunnel open")
	}
	conn.Close()
	m.waitUntil(t, 30*time.Second, "the old worker's exit", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool { return l.Msg == "exited planned" && l.Pid == pid }) == 1
	})
	m.stop(t)
}

// A 100 MiB upload passes through memdrain, which does not hold it: its
// peak RSS grows by far less than the body.
func TestLargeUploadStreams(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", streams)
	m := start(t, dir, []string{"--workers", "1"}, "node", "app.js")
	m.waitReady(t, 1)
	before := peakRSS(t, m.cmd.Process.Pid)
	const size = 100 << 20
	resp, err := http.Post("http://"+m.addr+"/upload", "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != strconv.Itoa(size) {
		t.Fatalf("the app counted %q, %v; want %d", body, err, size)
	}
	after := peakRSS(t, m.cmd.Process.Pid)
	t.Logf("memdrain's peak RSS: %d KiB before, %d KiB after", before>>10, after>>10)
	if after-before > 32<<20 {
		t.Errorf("memdrain's peak RSS grew by %d MiB for a 100 MiB upload; want it flat (under 32 MiB)", (after-before)>>20)
	}
	m.stop(t)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// peakRSS returns pid's VmHWM, in bytes.
func peakRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
