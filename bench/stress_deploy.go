package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
)

// The deploy scenarios: a reload under thousands of kept-alive clients,
// and a reload onto a binary that cannot start. No memory limit is in play
// (it is set far above what the workers use).

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
	isNew := func(e eventlog.Event) bool { return e.Is(cluster.Ready) && !slices.Contains(mapValues(old), e.Pid) }
	isOldExit := func(e eventlog.Event) bool { return e.IsExit() && slices.Contains(mapValues(old), e.Pid) }
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

// badDeployScenario runs the subject from a path of its own, replaces
// the file there with a program that exits 3, and reloads under load:
// nothing may fail, the master must stay up, and a later reload with the
// good binary back must work.
func badDeployScenario(ctx context.Context, env *stressEnv) (row stressRow) {
	const workers = 2
	row = stressRow{Target: "0 failed, 0 retried, master up, next good reload done"}
	dir := filepath.Join(env.tmp, "deploy")
	bin := filepath.Join(dir, "memdrain-subject")
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
	crashes := c.count(mark, func(e eventlog.Event) bool { return e.Is(cluster.ExitedAccidental) || e.Is(cluster.ReadyTimeout) })
	masterUp := c.proc.running() == nil
	row.notef("%d failed starts, %d reload-failed events", crashes, c.count(mark, func(e eventlog.Event) bool { return e.Is(cluster.ReloadFailed) }))
	reloadOK := false
	if masterUp {
		if err := replaceFile(bin, good); err != nil {
			return row.notRun(err)
		}
		mark := c.mark()
		syscall.Kill(c.proc.pid, syscall.SIGHUP)
		_, err := c.waitCount(ctx, mark, workers, pick(env, 10*time.Second, 6*time.Second), func(e eventlog.Event) bool { return e.Is(cluster.Ready) })
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
