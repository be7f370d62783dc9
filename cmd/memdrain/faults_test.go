//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/loadgen"
)

// versioned answers with the version written into its source, so a test
// sees when new code serves.
func versioned(version string) string {
	return `
const http = require('http');
const server = http.createServer((req, res) => {
  if (req.url === '/health') { res.end('ok\n'); return; }
  res.setHeader('X-Version', '` + version + `');
  res.end('ok\n');
});
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`
}

// background runs load until the returned function is called, and returns
// its result then.
func background(t *testing.T, c loadgen.Config) (stop func() loadgen.Result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan loadgen.Result, 1)
	go func() { done <- loadgen.Run(ctx, c) }()
	var once sync.Once
	var r loadgen.Result
	stop = func() loadgen.Result {
		once.Do(func() {
			cancel()
			r = <-done
		})
		return r
	}
	t.Cleanup(func() { stop() })
	return stop
}

func msgCount(name string) func([]logLine, string) bool {
	return func(logs []logLine, _ string) bool { return count(logs, msg(name)) > 0 }
}

// SIGHUP replaces every worker, one at a time, with the code now on disk,
// and no request fails.
func TestSIGHUPReloadsNewCode(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", versioned("1"))
	m := start(t, dir, []string{"--workers", "2"}, "node", "app.js")
	m.waitReady(t, 2)
	stop := background(t, loadgen.Config{URL: "http://" + m.addr + "/", Clients: 4, KeepAlive: true, Header: "X-Version"})
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte(versioned("2")), 0o644); err != nil {
		t.Fatal(err)
	}
	m.signal(t, syscall.SIGHUP)
	m.waitUntil(t, 30*time.Second, "2 workers reloaded", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool { return l.Msg == "exited planned" && l.Reason == "reload" }) == 2
	})
	after := loadgen.Run(ctxFor(t, 10*time.Second), loadgen.Config{URL: "http://" + m.addr + "/", Clients: 2, PerClient: 20, Header: "X-Version"})
	r := stop()
	t.Logf("during: %v; after: %v", r, after)
	if r.Failed != 0 || r.Retried != 0 || r.ByHeader["1"] == 0 {
		t.Errorf("during the reload: %v; want none failed or retried", r)
	}
	if after.Failed != 0 || after.ByHeader["2"] != after.Requests {
		t.Errorf("after the reload: %v, by version %v; want every answer from version 2", after, after.ByHeader)
	}
	m.stop(t)
}

// SIGHUP while the command on disk now fails: the replacements fail, the
// reload stops, and the old workers serve on without a failed request.
func TestSIGHUPWithBrokenCommandKeepsServing(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", versioned("1"))
	m := start(t, dir, []string{"--workers", "2"}, "node", "app.js")
	m.waitReady(t, 2)
	stop := background(t, loadgen.Config{URL: "http://" + m.addr + "/", Clients: 4, KeepAlive: true})
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte("process.exit(1);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.signal(t, syscall.SIGHUP)
	m.waitUntil(t, 30*time.Second, "the reload stopped", msgCount("reload failed"))
	r := stop()
	t.Logf("load: %v", r)
	if r.Requests == 0 || r.Failed != 0 || r.Retried != 0 {
		t.Errorf("load: %v; want requests, none failed or retried", r)
	}
	m.mu.Lock()
	drained := count(m.logs, msg("draining"))
	m.mu.Unlock()
	if drained != 0 {
		t.Errorf("%d workers drained; want none: the replacements never became ready", drained)
	}
	m.stop(t)
}

// An app process killed with SIGKILL under load: only its requests in
// flight fail, with 502, and its slot gets one new worker.
func TestAppKilledIsRespawned(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", versioned("1"))
	m := start(t, dir, []string{"--workers", "2"}, "node", "app.js")
	shims := m.waitReady(t, 2)
	apps := descendants(shims[0])
	if len(apps) != 1 {
		t.Fatalf("under worker pid %d: %v; want one node", shims[0], apps)
	}
	stop := background(t, loadgen.Config{URL: "http://" + m.addr + "/", Clients: 4, KeepAlive: true})
	if err := syscall.Kill(apps[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitUntil(t, 30*time.Second, "a new worker ready", func(logs []logLine, _ string) bool { return count(logs, msg("ready")) == 3 })
	r := stop()
	t.Logf("load: %v", r)
	for kind, n := range r.Failures {
		if kind != "status 502" {
			t.Errorf("%d requests failed with %s; want only 502s", n, kind)
		}
	}
	if r.Failed > 4 {
		t.Errorf("%d requests failed; want at most the 4 clients' requests in flight", r.Failed)
	}
	m.mu.Lock()
	accidents, started := count(m.logs, msg("exited accidental")), count(m.logs, msg("started"))
	m.mu.Unlock()
	if accidents != 1 || started != 3 {
		t.Errorf("%d accidental exits and %d starts; want 1 and 3", accidents, started)
	}
	m.stop(t)
}

// A stopped app (SIGSTOP) fails its health checks, is taken for hung,
// killed and replaced.
func TestStoppedAppIsReplaced(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", versioned("1"))
	m := start(t, dir, []string{"--workers", "2", "--health-path", "/health", "--health-interval", "100ms", "--health-failures", "2"}, "node", "app.js")
	shims := m.waitReady(t, 2)
	apps := descendants(shims[1])
	if len(apps) != 1 {
		t.Fatalf("under worker pid %d: %v; want one node", shims[1], apps)
	}
	if err := syscall.Kill(apps[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	m.waitUntil(t, 30*time.Second, "the stopped worker replaced", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool { return l.Msg == "hung" && l.Pid == shims[1] }) == 1 && count(logs, msg("ready")) == 3
	})
	m.waitUntil(t, 10*time.Second, "its exit", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool { return strings.HasPrefix(l.Msg, "exited") && l.Pid == shims[1] }) == 1
	})
	if left := alive(apps, nil); len(left) != 0 {
		t.Errorf("the stopped app still runs: %v", left)
	}
	m.stop(t)
}

// A command that crashes at once: memdrain gives up with a non-zero exit
// status, and leaves no process behind.
func TestCrashLoopGivesUp(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", "process.exit(1);\n")
	m := start(t, dir, []string{"--workers", "2"}, "sh", "-c", "node app.js; exit 1")
	code := m.wait(t, time.Minute)
	if code == 0 {
		t.Fatal("exit status 0 after a crash loop; want non-zero")
	}
	m.mu.Lock()
	gaveUp := count(m.logs, msg("give up"))
	var started []int
	for _, l := range m.logs {
		if l.Msg == "started" {
			started = append(started, l.Pid)
		}
	}
	m.mu.Unlock()
	if gaveUp != 1 {
		t.Errorf("%d give-up events; want 1", gaveUp)
	}
	if left := alive(started, started); len(left) != 0 {
		t.Errorf("processes left after the give-up: %v", left)
	}
}

// A request without a response header within --request-timeout gets 504,
// and its worker is replaced as hung.
func TestRequestTimeoutReplacesWorker(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", `
const http = require('http');
http.createServer((req, res) => { if (req.url !== '/hang') res.end('ok\n'); }).listen(Number(process.env.PORT), '127.0.0.1');
`)
	m := start(t, dir, []string{"--workers", "1", "--request-timeout", "300ms"}, "node", "app.js")
	shims := m.waitReady(t, 1)
	r := loadgen.Run(ctxFor(t, 10*time.Second), loadgen.Config{URL: "http://" + m.addr + "/hang", Clients: 1, PerClient: 1})
	if r.Failures["status 504"] != 1 {
		t.Errorf("%v; want one 504", r)
	}
	m.waitUntil(t, 30*time.Second, "the worker replaced as hung", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool {
			return l.Msg == "hung" && l.Pid == shims[0] && strings.Contains(l.Err, "--request-timeout")
		}) == 1 && count(logs, msg("ready")) == 2
	})
	m.stop(t)
}
