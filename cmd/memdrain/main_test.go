//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The tests run the memdrain binary, built once here, with real node and
// python3 apps written by each test.
var binary string

// buildFlags are go build's flags for the binary (see race_test.go).
var buildFlags []string

func TestMain(m *testing.M) {
	// memdrain run's control socket defaults to $XDG_RUNTIME_DIR: tests
	// that run at once must not share one, so each names its own.
	os.Unsetenv("XDG_RUNTIME_DIR")
	dir, err := os.MkdirTemp("", "memdrain-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "memdrain")
	build := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", binary, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building memdrain:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		goleak.VerifyTestMain(m) // exits
		return 0
	}()
	os.Exit(code)
}

// need skips the test when program is not installed.
func need(t *testing.T, program string) {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		t.Skipf("%s not found in PATH; .ci/test installs nodejs when it is missing", program)
	}
}

// logLine is one line of memdrain's log (--log-format json).
type logLine struct {
	Msg    string `json:"msg"`
	Level  string `json:"level"`
	Worker *int   `json:"worker"`
	Pid    int    `json:"pid"`
	Reason string `json:"reason"`
	Memory string `json:"memory"`
	Err    string `json:"err"`
}

// instance is one memdrain process under test.
type instance struct {
	cmd     *exec.Cmd
	addr    string // where it listens
	exited  chan struct{}
	err     error         // its exit, once exited is closed
	readAll chan struct{} // closed once its output ended

	mu      sync.Mutex
	logs    []logLine
	text    strings.Builder // stdout and stderr, as they came
	changed chan struct{}   // closed and replaced at every line
}

// start runs memdrain run with flags, --log-format json and a --listen on
// a free loopback port, then command, in dir.
func start(t *testing.T, dir string, flags []string, command ...string) *instance {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"run", "--listen", addr, "--log-format", "json"}, flags...)
	args = append(append(args, "--"), command...)
	m := launch(t, dir, args...)
	m.addr = addr
	return m
}

// launch runs the memdrain binary with args in dir; the test's cleanup kills
// it if it still runs.
func launch(t *testing.T, dir string, args ...string) *instance {
	t.Helper()
	return launchCmd(t, dir, exec.Command(binary, args...))
}

// launchCmd runs cmd, memdrain or what execs it, in dir; the test's cleanup
// kills it if it still runs.
func launchCmd(t *testing.T, dir string, cmd *exec.Cmd) *instance {
	t.Helper()
	m := &instance{exited: make(chan struct{}), readAll: make(chan struct{}), changed: make(chan struct{})}
	m.cmd = cmd
	m.cmd.Dir = dir
	// Pipes of its own rather than StdoutPipe: the process's exit is
	// known at once, even while something it left behind holds them.
	var readers []*os.File
	for _, out := range []*io.Writer{&m.cmd.Stdout, &m.cmd.Stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		*out = w
		readers = append(readers, r)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reading sync.WaitGroup
	for _, r := range readers {
		reading.Add(1)
		go func() {
			defer reading.Done()
			defer r.Close()
			m.read(r)
		}()
	}
	go func() {
		reading.Wait()
		close(m.readAll)
	}()
	go func() {
		err := m.cmd.Wait()
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		close(m.exited)
	}()
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		<-m.exited
		if t.Failed() {
			t.Logf("memdrain's output:\n%s", m.output())
		}
	})
	return m
}

func (m *instance) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m.mu.Lock()
		m.text.WriteString(line + "\n")
		if strings.HasPrefix(line, "{") {
			var l logLine
			if json.Unmarshal([]byte(line), &l) == nil {
				m.logs = append(m.logs, l)
			}
		}
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
}

func (m *instance) output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.text.String()
}

// waitUntil waits until cond, called under the lock with the log so far,
// holds, or fails the test after timeout.
func (m *instance) waitUntil(t *testing.T, timeout time.Duration, what string, cond func(logs []logLine, text string) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := m.await(ctx, cond); err != nil {
		t.Fatalf("no %s: %v", what, err)
	}
}

// await waits until cond holds, ctx ends or memdrain exits, without
// failing the test: other goroutines may call it.
func (m *instance) await(ctx context.Context, cond func(logs []logLine, text string) bool) error {
	for {
		m.mu.Lock()
		ok := cond(m.logs, m.text.String())
		changed := m.changed
		m.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-m.exited:
			m.mu.Lock()
			ok := cond(m.logs, m.text.String())
			m.mu.Unlock()
			if !ok {
				return fmt.Errorf("memdrain exited (%v)", m.err)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// count returns how many log lines match.
func count(logs []logLine, match func(logLine) bool) int {
	n := 0
	for _, l := range logs {
		if match(l) {
			n++
		}
	}
	return n
}

func msg(name string) func(logLine) bool { return func(l logLine) bool { return l.Msg == name } }

// waitReady waits until n workers reported ready, and returns their pids.
func (m *instance) waitReady(t *testing.T, n int) []int {
	t.Helper()
	m.waitUntil(t, 30*time.Second, fmt.Sprintf("%d workers ready", n), func(logs []logLine, _ string) bool {
		return count(logs, msg("ready")) >= n
	})
	var pids []int
	m.mu.Lock()
	for _, l := range m.logs {
		if l.Msg == "ready" {
			pids = append(pids, l.Pid)
		}
	}
	m.mu.Unlock()
	return pids
}

// wait waits for memdrain to exit, and returns its exit code.
func (m *instance) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-m.exited:
	case <-time.After(timeout):
		t.Fatalf("memdrain still runs %v later", timeout)
	}
	select {
	case <-m.readAll:
	case <-time.After(5 * time.Second): // something it left holds its output
	}
	if m.cmd.ProcessState == nil {
		t.Fatalf("memdrain: %v", m.err)
	}
	return m.cmd.ProcessState.ExitCode()
}

func (m *instance) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeApp writes an app's source into a new directory and returns it.
func writeApp(t *testing.T, name, source string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ctxFor returns a context that ends after d, or at the test's end.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
