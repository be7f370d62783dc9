//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
)

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

	// unhealthy is watchHealth's verdict once --health-path failed
	// --health-failures times in a row; Health reports it.
	unhealthy atomic.Pointer[error]
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

// Health implements cluster.Launched: it fails once a request outlived
// --request-timeout, or once watchHealth found the worker unhealthy. The
// supervisor calls it on every heartbeat, and kills the worker as hung.
func (a *appWorker) Health(context.Context) error {
	if a.timedOut.Load() {
		return fmt.Errorf("a request got no response header within --request-timeout %v", a.l.opts.requestTimeout)
	}
	if err := a.unhealthy.Load(); err != nil {
		return *err
	}
	return nil
}

// watchHealth polls --health-path every --health-interval while the
// worker serves, each poll bounded by half of the heartbeat timeout (as
// Config.Health is), and keeps the verdict for Health. It runs apart from
// the heartbeat so that the interval is the flag's, and a slow poll never
// delays a ping's answer.
func (a *appWorker) watchHealth() {
	o := a.l.opts
	if o.healthPath == "" {
		return
	}
	tick := time.NewTicker(o.healthInterval)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-tick.C:
		case <-a.exited:
			return
		case <-a.w.Controller.Draining():
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.l.cfg.HeartbeatTimeout/2)
		err := a.get(ctx, o.healthPath)
		cancel()
		if err == nil {
			failures = 0
			continue
		}
		failures++
		if failures < max(o.healthFailures, 1) {
			a.l.log.Warn("health check failed", "worker", a.w.ID, "pid", a.pid, "failures", failures, "err", err.Error())
			continue
		}
		err = fmt.Errorf("--health-path %s failed %d times in a row: %w", o.healthPath, failures, err)
		a.unhealthy.Store(&err)
		return
	}
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
		go a.watchHealth()
	} // else the supervisor drains or kills it (ReadyTimeout)
	select {
	case <-draining:
	case <-a.exited:
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
