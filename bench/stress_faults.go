package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
)

// The fault scenarios: shutdown under load and a hung worker. No memory
// limit is in play (it is set far above what the workers use).

const noLimit = 1 << 30

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
	ev, err := c.waitCount(ctx, mark, 1, within, func(e eventlog.Event) bool { return e.Is(cluster.Hung) && e.Pid == pid })
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
