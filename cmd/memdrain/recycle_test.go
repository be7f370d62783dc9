//go:build linux

package main

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/loadgen"
)

// leakyNode keeps 256 KiB of Buffer memory for every request, as a real
// leak does, until it is recycled. /slow answers after a second, and logs
// its start; /health answers 200.
const leakyNode = `
const http = require('http');
const kept = [];
const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => {
    if (req.url === '/slow') {
      console.log('slow request started');
      setTimeout(() => res.end('slow done\n'), 1000);
      return;
    }
    if (req.url === '/health') { res.end('ok\n'); return; }
    kept.push(Buffer.alloc(256 * 1024, 1));
    res.end('ok ' + n + '\n');
  });
});
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`

// leakyPython is leakyNode in python3's standard library.
const leakyPython = `
import os, http.server
kept = []
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *args):
        pass
    def answer(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else b''
        kept.append(b'x' * (256 * 1024))
        out = b'ok %d\n' % len(body)
        self.send_response(200)
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = answer
    do_POST = answer
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), Handler).serve_forever()
`

// recycles counts the workers that exited after a drain for memory.
func recycles(logs []logLine) int {
	return count(logs, func(l logLine) bool { return l.Msg == "exited planned" && l.Reason == "memory" })
}

// loadUntilRecycled drives GET and POST, on kept-alive and on new
// connections, at memdrain until at least n workers were recycled for
// memory, and checks that no request failed and none was retried. It
// calls during, if not nil, after the n recycles, the load still running;
// it returns the number of requests answered.
func loadUntilRecycled(t *testing.T, m *instance, n int, during func()) int {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	results := make([]loadgen.Result, 4)
	for i, c := range []loadgen.Config{
		{Method: "GET", KeepAlive: true},
		{Method: "GET"},
		{Method: "POST", KeepAlive: true},
		{Method: "POST"},
	} {
		c.URL = "http://" + m.addr + "/"
		c.Clients = 2
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = loadgen.Run(ctx, c)
		}()
	}
	wait, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := m.await(wait, func(logs []logLine, _ string) bool { return recycles(logs) >= n })
	if err == nil && during != nil {
		during()
	}
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("fewer than %d memory recycles: %v", n, err)
	}
	answered := 0
	for i, r := range results {
		t.Logf("load %d: %v", i, r)
		if r.Requests == 0 || r.Failed != 0 || r.Retried != 0 {
			t.Errorf("load %d: %v; want requests, none failed, none retried", i, r)
		}
		answered += r.Requests - r.Failed
	}
	return answered
}

// stop sends SIGTERM and wants exit status 0.
func (m *instance) stop(t *testing.T) {
	t.Helper()
	m.signal(t, syscall.SIGTERM)
	if code := m.wait(t, time.Minute); code != 0 {
		t.Fatalf("memdrain exited with %d after SIGTERM; want 0", code)
	}
}

// A leaking Node app is recycled over its limit without a failed or
// retried request: run directly, through a shell that execs it, and
// through one that does not, where the leak is in a grandchild of the
// shim.
func TestNodeRecycledWithoutLoss(t *testing.T) {
	need(t, "node")
	for _, tc := range []struct {
		name    string
		command []string
	}{
		{"direct", []string{"node", "app.js"}},
		{"sh-exec", []string{"sh", "-c", "exec node app.js"}},
		{"sh-tree", []string{"sh", "-c", "node app.js; true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeApp(t, "app.js", leakyNode)
			m := start(t, dir, []string{"--workers", "2", "--max-memory", "120Mi"}, tc.command...)
			m.waitReady(t, 2)
			loadUntilRecycled(t, m, 5, nil)
			m.stop(t)
		})
	}
}

func TestPythonRecycledWithoutLoss(t *testing.T) {
	need(t, "python3")
	dir := writeApp(t, "app.py", leakyPython)
	m := start(t, dir, []string{"--workers", "2", "--max-memory", "60Mi"}, "python3", "app.py")
	m.waitReady(t, 2)
	loadUntilRecycled(t, m, 3, nil)
	m.stop(t)
}
