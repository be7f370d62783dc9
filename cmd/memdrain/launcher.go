//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/proxy"
)

// launcher starts each worker as a shim running the command (see shim),
// and serves the worker's side of the supervisor's protocol in this
// process: readiness, the proxy's counts, the health check, and the drain.
type launcher struct {
	opts  options
	cfg   cluster.Config // the supervisor's, with its defaults: set before it runs
	exe   string         // this binary, re-executed as the shim
	proxy *proxy.Proxy
	log   *slog.Logger
	// front stops the front server: new connections are refused at once,
	// and it returns once every request in flight has finished. It is
	// set before the supervisor runs, and run once, by stopFront.
	front      func()
	frontOnce  sync.Once
	frontStart atomic.Bool
	// frontDone is closed once front has returned: a shutdown stops the
	// workers only then.
	frontDone chan struct{}
	client    *http.Client // readiness and health checks

	mu      sync.Mutex
	workers map[int]*appWorker // by pid, while the process lives
}

// newLauncher returns a launcher; its proxy is set once made, since the
// proxy calls the launcher's onTimeout.
func newLauncher(opts options, exe string, log *slog.Logger) *launcher {
	return &launcher{
		opts: opts, exe: exe, log: log,
		frontDone: make(chan struct{}),
		client:    &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		workers:   make(map[int]*appWorker),
	}
}

// appWorker is one shim and the app it runs, as the supervisor sees it
// (cluster.Launched).
type appWorker struct {
	l        *launcher
	w        *cluster.Worker
	cmd      *exec.Cmd
	pid      int // the shim's, which is also the group's id
	port     int
	addr     string
	lifeline *os.File      // the write end of the shim's lifeline
	exited   chan struct{} // closed once Wait has reaped the shim
	timedOut atomic.Bool   // a request outlived --request-timeout

	mu     sync.Mutex // held by a signal to the group and by the reaping
	reaped bool

	// Health's own state; Health calls never overlap.
	lastCheck time.Time
	failures  int
}

// Launch implements cluster.Launcher.
func (l *launcher) Launch(w *cluster.Worker, start func(*exec.Cmd) error) (cluster.Launched, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("choosing a port for worker %d: %w", w.ID, err)
	}
	lifeline, lifelineEnd, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer lifeline.Close()
	id := strconv.Itoa(w.ID)
	cmd := exec.Command(l.exe, append([]string{shimCommand, id, "--"}, l.opts.command...)...)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "MEMDRAIN_WORKER_ID="+id, "NODE_APP_INSTANCE="+id)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{lifeline} // lifelineFD
	// A group of its own, which the master kills whole; and SIGTERM when
	// the master dies, on which the shim kills that group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := start(cmd); err != nil {
		lifelineEnd.Close()
		return nil, fmt.Errorf("starting worker %d: %w", w.ID, err)
	}
	a := &appWorker{l: l, w: w, cmd: cmd, pid: cmd.Process.Pid, port: port,
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), lifeline: lifelineEnd, exited: make(chan struct{})}
	l.mu.Lock()
	l.workers[a.pid] = a
	l.mu.Unlock()
	go a.serve()
	return a, nil
}

// stopFront stops the front server, once, in a goroutine of its own: the
// supervisor is stopping (SIGTERM, SIGINT).
func (l *launcher) stopFront() {
	l.frontOnce.Do(func() {
		l.frontStart.Store(true)
		go func() {
			l.front()
			close(l.frontDone)
		}()
	})
}

// waitFront waits for stopFront's goroutine, if it was started.
func (l *launcher) waitFront() {
	l.frontOnce.Do(func() {}) // none starts after this
	if l.frontStart.Load() {
		<-l.frontDone
	}
}

// onTimeout is the proxy's OnTimeout: the worker's next health check
// fails, so the supervisor replaces it as hung.
func (l *launcher) onTimeout(pid int) {
	l.mu.Lock()
	a := l.workers[pid]
	l.mu.Unlock()
	if a != nil {
		a.timedOut.Store(true)
	}
}

// Pid implements cluster.Launched.
func (a *appWorker) Pid() int { return a.pid }

// Wait implements cluster.Launched. It kills what the app left in its
// group before it reaps the shim: until then the shim's pid, which is the
// group's id, cannot be taken by another process.
func (a *appWorker) Wait() error {
	waitExited(a.pid)
	a.mu.Lock()
	syscall.Kill(-a.pid, syscall.SIGKILL)
	err := a.cmd.Wait()
	a.reaped = true
	a.mu.Unlock()
	a.lifeline.Close()
	a.l.proxy.Remove(a.pid)
	a.l.mu.Lock()
	delete(a.l.workers, a.pid)
	a.l.mu.Unlock()
	close(a.exited)
	return err
}

// Kill implements cluster.Launched: the whole group.
func (a *appWorker) Kill() error { return a.signal(syscall.SIGKILL) }

// signal sends sig to the worker's whole group, unless the shim was reaped.
func (a *appWorker) signal(sig syscall.Signal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reaped {
		return nil
	}
	return syscall.Kill(-a.pid, sig)
}

// Stats implements cluster.Launched with the proxy's counts.
func (a *appWorker) Stats() (int, uint64) { return a.l.proxy.Stats(a.pid) }

// Health implements cluster.Launched: --health-path, at most once each
// --health-interval, failing after --health-failures failures in a row; and
// at once after a request outlived --request-timeout.
func (a *appWorker) Health(ctx context.Context) error {
	if a.timedOut.Load() {
		return fmt.Errorf("a request got no response header within --request-timeout %v", a.l.opts.requestTimeout)
	}
	o := a.l.opts
	if o.healthPath == "" || time.Since(a.lastCheck) < o.healthInterval {
		return nil
	}
	a.lastCheck = time.Now()
	err := a.get(ctx, o.healthPath)
	if err == nil {
		a.failures = 0
		return nil
	}
	a.failures++
	if a.failures < max(o.healthFailures, 1) {
		a.l.log.Warn("health check failed", "worker", a.w.ID, "pid", a.pid, "failures", a.failures, "err", err.Error())
		return nil
	}
	return fmt.Errorf("--health-path %s failed %d times in a row: %w", o.healthPath, a.failures, err)
}

// get requests path on the worker's port and wants a 2xx.
func (a *appWorker) get(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.l.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s answered %s", path, resp.Status)
	}
	return nil
}

// serve is the worker's life as its agent sees it: ready, serving through
// the proxy, drained, stopped.
func (a *appWorker) serve() {
	draining := a.w.Controller.Draining()
	if a.waitReady() {
		a.l.proxy.Add(a.pid, a.addr)
		a.w.Ready()
		select {
		case <-draining:
		case <-a.exited:
		}
	} else {
		select {
		case <-draining:
		case <-a.exited:
		}
	}
	if isClosed(a.exited) {
		return // crashed or killed: Wait took it out of the proxy
	}
	if a.w.Controller.Reason() == drain.Signal {
		// memdrain is stopping: the front server refuses new connections
		// and finishes every request in flight first, which need this
		// worker.
		a.l.stopFront()
		select {
		case <-a.l.frontDone:
		case <-a.exited:
			return
		}
	}
	timeout := time.NewTimer(a.l.cfg.DrainTimeout)
	defer timeout.Stop()
	select {
	case <-a.l.proxy.Drain(a.pid):
	case <-timeout.C:
		a.l.log.Warn("drain timed out; stopping the worker with requests in flight", "worker", a.w.ID, "pid", a.pid)
	case <-a.exited:
		return
	}
	a.signal(a.l.opts.stopSignal)
	grace := time.NewTimer(a.l.cfg.KillGrace)
	defer grace.Stop()
	select {
	case <-a.exited:
	case <-grace.C:
		a.l.log.Warn("worker still runs --kill-grace after its stop signal; killing it", "worker", a.w.ID, "pid", a.pid,
			"kill_grace", a.l.cfg.KillGrace, "stop_signal", a.l.opts.stopSignal.String())
		a.Kill()
	}
}

// waitReady polls the worker's port until it is ready, and reports
// whether it is. It gives up when the worker exits or is drained, and at
// --ready-timeout, when the supervisor kills it: it then says why.
func (a *appWorker) waitReady() bool {
	o := a.l.opts
	deadline := time.NewTimer(a.l.cfg.ReadyTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		if a.probe() {
			return true
		}
		select {
		case <-poll.C:
		case <-a.exited:
			return false
		case <-a.w.Controller.Draining():
			return false
		case <-deadline.C:
			what := "listen on PORT=" + strconv.Itoa(a.port)
			if o.readyPath != "" {
				what = fmt.Sprintf("answer 2xx on --ready-path %s at PORT=%d", o.readyPath, a.port)
			}
			a.l.log.Error(fmt.Sprintf("worker %d did not %s within %v; does the app read PORT?", a.w.ID, what, a.l.cfg.ReadyTimeout),
				"worker", a.w.ID, "pid", a.pid)
			return false
		}
	}
}

// probe checks readiness once: --ready-path answers 2xx, or the port
// accepts a connection.
func (a *appWorker) probe() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if a.l.opts.readyPath != "" {
		return a.get(ctx, a.l.opts.readyPath) == nil
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", a.addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitExited blocks until process pid has exited, without reaping it.
func waitExited(pid int) {
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(pid), uintptr(unsafe.Pointer(&info)),
			syscall.WEXITED|0x01000000 /* WNOWAIT */, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}
