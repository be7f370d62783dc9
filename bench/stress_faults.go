package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// The scenarios of operations and faults: a reload under many kept-alive
// clients, a bad deploy, shutdown under load, and a hung worker. No
// memory limit is in play (it is set far above what the workers use).

const noLimit = 1 << 30

// reloadScenario reloads 2 workers (SIGHUP) under thousands of kept-alive
// clients that pause up to a second between POSTs, so that many of their
// connections are idle when their worker starts to drain.
func reloadScenario(ctx context.Context, env *stressEnv) (row stressRow) {
	const workers = 2
	row = stressRow{Target: "0 failed, 0 retried, reload done"}
	c, err := startCluster(ctx, clusterSpec{bin: env.bin, workers: workers, limit: noLimit})
	if err != nil {
		return row.notRun(err)
	}
	defer c.closeInto(&row)
	clients := pick(env, 2000, 200)
	t := &tally{}
	l := startLoads(t, users{
		n: clients, spec: clientSpec{proto: http1, keepAlive: true},
		method: http.MethodPost, url: "http://" + c.addr + "/work?ms=1", pause: time.Second,
	})
	defer l.finish()
	hold(ctx, pick(env, 3*time.Second, 2*time.Second)) // every client connected and paused once
	old := c.workers()
	mark := c.mark()
	reloaded := time.Now()
	syscall.Kill(c.proc.pid, syscall.SIGHUP)
	isNew := func(e event) bool { return e.Kind == kindReady && !slices.Contains(mapValues(old), e.Pid) }
	isOldExit := func(e event) bool { return e.isExit() && slices.Contains(mapValues(old), e.Pid) }
	_, errNew := c.waitCount(ctx, mark, workers, pick(env, 12*time.Second, 8*time.Second), isNew)
	_, errOld := c.waitCount(ctx, mark, workers, pick(env, 4*time.Second, 2*time.Second), isOldExit)
	took := time.Since(reloaded)
	hold(ctx, time.Second) // the clients' next requests, on the new workers
	l.finish()
	row.counted(t.totals(time.Time{}, time.Time{}))
	done := errNew == nil && errOld == nil
	row.Pass = row.Failed == 0 && row.Retried == 0 && done
	row.notef("%d clients", clients)
	if done {
		row.notef("reload took %.1f s", took.Seconds())
	} else {
		row.notef("reload not done: new workers: %v; old workers' exits: %v", errOr(errNew), errOr(errOld))
	}
	return row
}

func mapValues(m map[int]int) []int {
	var v []int
	for _, x := range m {
		v = append(v, x)
	}
	return v
}

func errOr(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// badDeployScenario runs the example from a path of its own, replaces
// the file there with a program that exits 3, and reloads under load:
// nothing may fail, the master must stay up, and a later reload with the
// good binary back must work.
func badDeployScenario(ctx context.Context, env *stressEnv) (row stressRow) {
	const workers = 2
	row = stressRow{Target: "0 failed, 0 retried, master up, next good reload done"}
	dir := filepath.Join(env.tmp, "deploy")
	bin := filepath.Join(dir, "memdrain-example")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return row.notRun(err)
	}
	if err := copyFile(env.bin, bin, 0o755); err != nil {
		return row.notRun(err)
	}
	good, err := os.ReadFile(env.bin)
	if err != nil {
		return row.notRun(err)
	}
	c, err := startCluster(ctx, clusterSpec{bin: bin, workers: workers, limit: noLimit})
	if err != nil {
		return row.notRun(err)
	}
	defer c.closeInto(&row)
	t := &tally{}
	base := "http://" + c.addr
	l := startLoads(t,
		users{n: 16, spec: clientSpec{proto: http1, keepAlive: true}, method: http.MethodPost, url: base + "/work?ms=2", pause: 100 * time.Millisecond},
		users{n: 8, spec: clientSpec{proto: http1}, method: http.MethodGet, url: base + "/work?ms=2", pause: 20 * time.Millisecond},
	)
	defer l.finish()
	hold(ctx, time.Second)
	if err := replaceFile(bin, []byte("#!/bin/sh\nexit 3\n")); err != nil {
		return row.notRun(err)
	}
	mark := c.mark()
	syscall.Kill(c.proc.pid, syscall.SIGHUP)
	hold(ctx, pick(env, 8*time.Second, 4*time.Second), c.proc.exited)
	crashes := c.count(mark, func(e event) bool { return e.Kind == kindAccidental || e.Kind == "ready-timeout" })
	masterUp := c.proc.running() == nil
	row.notef("%d failed starts, %d reload-failed events", crashes, c.count(mark, func(e event) bool { return e.Kind == "reload-failed" }))
	reloadOK := false
	if masterUp {
		if err := replaceFile(bin, good); err != nil {
			return row.notRun(err)
		}
		mark := c.mark()
		syscall.Kill(c.proc.pid, syscall.SIGHUP)
		_, err := c.waitCount(ctx, mark, workers, pick(env, 10*time.Second, 6*time.Second), func(e event) bool { return e.Kind == kindReady })
		reloadOK = err == nil
		if reloadOK {
			row.notef("master up; good reload done")
		} else {
			row.notef("master up; good reload not done: %v", err)
		}
	} else {
		row.notef("master exited: %v", c.proc.err)
	}
	l.finish()
	row.counted(t.totals(time.Time{}, time.Time{}))
	row.Pass = row.Failed == 0 && row.Retried == 0 && masterUp && reloadOK
	return row
}

// shutdownScenario sends SIGTERM to the master under load and opens new
// connections while it shuts down: requests in flight must complete, and
// a new connection must be served or refused at once, never left to hang.
func shutdownScenario(ctx context.Context, env *stressEnv) (row stressRow) {
	row = stressRow{Target: "0 failed in flight, no new connection hangs > 1 s"}
	c, err := startCluster(ctx, clusterSpec{bin: env.bin, workers: 2, limit: noLimit})
	if err != nil {
		return row.notRun(err)
	}
	defer c.closeInto(&row)
	t := &tally{}
	base := "http://" + c.addr
	l := startLoads(t,
		users{n: 24, spec: clientSpec{proto: http1, keepAlive: true}, method: http.MethodPost, url: base + "/work?ms=200"},
		// Long requests keep the workers draining for a while after the
		// SIGTERM: the window in which a new connection could be queued
		// where nobody accepts it.
		// They start with the load, so they are 1 or 2 s from their end
		// at the SIGTERM.
		users{n: 4, spec: clientSpec{proto: http1}, method: http.MethodGet, url: base + "/work?ms=4000"},
	)
	defer l.finish()
	hold(ctx, pick(env, 2*time.Second, time.Second))
	l.halt() // the load's clients send nothing new; what they sent must complete
	syscall.Kill(c.proc.pid, syscall.SIGTERM)

	// New connections, one every 20 ms, for a few seconds.
	const every, hangs = 20 * time.Millisecond, time.Second
	probes := &tally{}
	var wg sync.WaitGroup
	spec := clientSpec{proto: http1, timeout: 5 * time.Second}
	client := spec.client()
	ticker := time.NewTicker(every)
	for range int(pick(env, 3*time.Second, 2*time.Second) / every) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			probes.add(send(client, http.MethodGet, base+"/health"))
		}()
		<-ticker.C
	}
	ticker.Stop()
	wg.Wait()
	client.CloseIdleConnections()
	l.finish()
	row.counted(t.totals(time.Time{}, time.Time{}))

	var served, refused, hung int
	kinds := map[string]int{}
	for _, o := range probes.outcomes {
		if o.failure != "" {
			kinds[shortFailure(o.failure)]++
		}
		switch {
		case o.end.Sub(o.start) > hangs:
			hung++
		case o.failure == "":
			served++
		default:
			refused++
		}
	}
	row.Pass = row.Failed == 0 && hung == 0
	row.notef("new connections during shutdown: %d served, %d refused, %d hung > 1 s (failures: %s)", served, refused, hung, failures(refused+hung, kinds))
	select {
	case <-c.proc.exited:
	case <-time.After(10 * time.Second):
		row.Pass = false
		row.notef("the master had not exited 10 s after the probes")
	}
	return row
}

// hungWorkerScenario stops a worker (SIGSTOP) under load: the master must
// report it hung within 10 s and replace it, and requests after that must
// be served.
func hungWorkerScenario(ctx context.Context, env *stressEnv) (row stressRow) {
	const within = 10 * time.Second
	row = stressRow{Target: "hung event ≤ 10 s, then 0 failed"}
	c, err := startCluster(ctx, clusterSpec{bin: env.bin, workers: 2, limit: noLimit})
	if err != nil {
		return row.notRun(err)
	}
	defer c.closeInto(&row)
	t := &tally{}
	base := "http://" + c.addr
	l := startLoads(t,
		users{n: 16, spec: clientSpec{proto: http1, keepAlive: true, timeout: 3 * time.Second}, method: http.MethodGet, url: base + "/work?ms=5", pause: 20 * time.Millisecond},
		users{n: 8, spec: clientSpec{proto: http1, timeout: 3 * time.Second}, method: http.MethodGet, url: base + "/work?ms=5", pause: 20 * time.Millisecond},
	)
	defer l.finish()
	hold(ctx, time.Second)
	pid := c.workers()[0]
	if pid == 0 {
		return row.notRun(fmt.Errorf("no live worker in slot 0 to stop"))
	}
	mark := c.mark()
	stopped := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return row.notRun(fmt.Errorf("stopping worker %d: %w", pid, err))
	}
	// Runs before c.close (deferred earlier): a stopped worker never
	// exits, and the master's stop waits for every worker.
	defer syscall.Kill(pid, syscall.SIGCONT)
	ev, err := c.waitCount(ctx, mark, 1, within, func(e event) bool { return e.Kind == "hung" && e.Pid == pid })
	seen := err == nil
	var after time.Time
	if seen {
		after = ev.Time.Add(time.Second)
		hold(ctx, pick(env, 3*time.Second, 2*time.Second))
		row.notef("hung event after %.1f s", ev.Time.Sub(stopped).Seconds())
	} else {
		row.notef("no hung event in %v (%v)", within, err)
	}
	l.finish()
	syscall.Kill(pid, syscall.SIGCONT)
	row.counted(t.totals(time.Time{}, time.Time{}))
	if seen {
		late := t.totals(after, time.Time{})
		row.Pass = late.failed == 0 && late.requests > 0
		row.notef("%d requests from 1 s after it, %d failed", late.requests, late.failed)
	}
	return row
}
