//go:build linux

package main

import (
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

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/proxy"
	"github.com/memdrain/memdrain/internal/systemd"
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
	stop := strconv.Itoa(int(l.opts.stopSignal))
	cmd := exec.Command(l.exe, append([]string{shimCommand, id, stop, "--"}, l.opts.command...)...)
	cmd.Env = append(systemd.Environ(), "PORT="+strconv.Itoa(port), "MEMDRAIN_WORKER_ID="+id, "NODE_APP_INSTANCE="+id)
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

// onUnreachable is the proxy's OnUnreachable: a connection to the
// worker's port was refused, and the proxy routes around it. Usually the
// app has just died, and its exit follows. One that still runs has closed
// its listener: it is replaced, fork first, as if it had asked.
func (l *launcher) onUnreachable(pid int) {
	l.mu.Lock()
	a := l.workers[pid]
	l.mu.Unlock()
	if a == nil {
		return
	}
	go a.w.Recycle(drain.Supervisor) // the proxy's goroutine must not wait
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
