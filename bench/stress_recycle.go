package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
)

// The scenarios in which workers are recycled for memory while clients
// that a timer-driven drain would cut are connected: clients far away,
// HTTP/2, and the leak rates.

const mib = 1 << 20

// recycleLimit is small, so that the load recycles every worker in about
// two seconds.
const recycleLimit = 48 * mib

// recycling runs load (built for the subject's base URL) against a
// cluster of 2 workers recycled for memory, for the part's duration. The
// target: no request failed or retried, and at least one recycle. With
// tls, a probe first checks that the subject serves that protocol.
func recycling(ctx context.Context, env *stressEnv, args []string, probeWith *clientSpec, load func(base string) []runner) (row stressRow) {
	row = stressRow{Target: "0 failed, 0 retried, ≥ 1 recycle", LimitBytes: recycleLimit}
	c, err := startCluster(ctx, clusterSpec{bin: env.bin, workers: 2, limit: recycleLimit, args: args})
	if err != nil {
		return row.notRun(err)
	}
	defer c.closeInto(&row)
	scheme := "http"
	if probeWith != nil {
		scheme = probeWith.proto.scheme()
		if err := probe(*probeWith, scheme+"://"+c.addr+"/health"); err != nil {
			row.Requests, row.Failed, row.Failures = 1, 1, map[string]int{"probe": 1}
			row.notef("the subject does not serve this protocol (probe: %v)", err)
			return row
		}
	}
	mark := c.mark()
	t := &tally{}
	l := startLoads(t, load(scheme+"://"+c.addr)...)
	hold(ctx, env.cfg.Duration, c.guard)
	l.finish()
	recycles := c.count(mark, eventlog.Event.IsRecycle)
	row.counted(t.totals(time.Time{}, time.Time{}))
	row.MaxRSSRatio = c.peakRatio()
	row.Pass = row.Failed == 0 && row.Retried == 0 && recycles > 0
	row.notef("%d recycles", recycles)
	return row
}

func lateFirstByteScenario(ctx context.Context, env *stressEnv) stressRow {
	return recycling(ctx, env, nil, nil, func(base string) []runner {
		return []runner{users{
			n:      pick(env, 64, 48),
			spec:   clientSpec{proto: http1, delays: delays{FirstWrite: 150 * time.Millisecond}},
			method: http.MethodGet, url: base + "/work?ms=5&leak=128",
		}}
	})
}

func slowHandshakeScenario(ctx context.Context, env *stressEnv) stressRow {
	spec := clientSpec{proto: http1TLS, delays: delays{SecondFlight: 150 * time.Millisecond}}
	return recycling(ctx, env, []string{"-tls"}, &spec, func(base string) []runner {
		return []runner{users{n: pick(env, 64, 48), spec: spec, method: http.MethodGet, url: base + "/work?ms=5&leak=128"}}
	})
}

func latencyScenario(ctx context.Context, env *stressEnv) stressRow {
	return recycling(ctx, env, nil, nil, func(base string) []runner {
		return []runner{users{
			n:      pick(env, 64, 48),
			spec:   clientSpec{proto: http1, keepAlive: true, delays: delays{EveryWrite: 50 * time.Millisecond}},
			method: http.MethodPost, url: base + "/work?ms=5&leak=128", pause: 300 * time.Millisecond,
		}}
	})
}

func h2cScenario(ctx context.Context, env *stressEnv) stressRow {
	spec := clientSpec{proto: h2c, keepAlive: true}
	return recycling(ctx, env, []string{"-h2c"}, &spec, func(base string) []runner {
		return []runner{users{n: pick(env, 48, 32), spec: spec, method: http.MethodPost, url: base + "/work?ms=5&leak=256", pause: 500 * time.Millisecond}}
	})
}

func h2TLSScenario(ctx context.Context, env *stressEnv) stressRow {
	spec := clientSpec{proto: h2TLS, keepAlive: true}
	return recycling(ctx, env, []string{"-tls"}, &spec, func(base string) []runner {
		return []runner{users{n: pick(env, 48, 32), spec: spec, method: http.MethodPost, url: base + "/work?ms=5&leak=256", pause: 500 * time.Millisecond}}
	})
}

// leakLimit is the limit of the leak-rate scenarios.
const leakLimit = 64 * mib

// leaking drives a paced leak of mibPerSec a worker, in requests leaking
// leakKiB each, over kept-alive connections, for at least least, and
// checks the highest RSS of any worker against most × the limit.
func leaking(ctx context.Context, env *stressEnv, mibPerSec, leakKiB int, most float64, least time.Duration) (row stressRow) {
	const workers = 2
	row = stressRow{Target: fmt.Sprintf("highest RSS ≤ %.2f×, 0 failed, ≥ 1 recycle", most), LimitBytes: leakLimit}
	c, err := startCluster(ctx, clusterSpec{bin: env.bin, workers: workers, limit: leakLimit})
	if err != nil {
		return row.notRun(err)
	}
	defer c.closeInto(&row)
	mark := c.mark()
	t := &tally{}
	p := &paced{
		n: 32, spec: clientSpec{proto: http1, keepAlive: true},
		url:    fmt.Sprintf("http://%s/work?leak=%d", c.addr, leakKiB),
		perSec: float64(workers*mibPerSec*1024) / float64(leakKiB),
	}
	start := time.Now()
	l := startLoads(t, p)
	hold(ctx, max(env.cfg.Duration, least), c.guard)
	l.finish()
	secs := time.Since(start).Seconds()
	recycles := c.count(mark, eventlog.Event.IsRecycle)
	row.counted(t.totals(time.Time{}, time.Time{}))
	row.MaxRSSRatio = c.peakRatio()
	row.Pass = row.Failed == 0 && row.MaxRSSRatio <= most && recycles > 0
	sent := float64(p.sent.Load()) * float64(leakKiB) / 1024 / workers / secs
	row.notef("leaked %.0f MiB/s a worker", sent)
	select {
	case <-c.guard:
		row.notef("load stopped at %d× the limit", guardRatio)
	default:
	}
	row.notef("%d recycles, %d config-problem", recycles, c.count(mark, func(e eventlog.Event) bool { return e.Is(cluster.ConfigProblem) }))
	return row
}

func fastLeakScenario(ctx context.Context, env *stressEnv) stressRow {
	return leaking(ctx, env, 200, 1024, 1.25, 0)
}

func standardLeakScenario(ctx context.Context, env *stressEnv) stressRow {
	// A worker reaches the limit from its start in about 3 s: at least 6 s
	// recycles each worker once.
	return leaking(ctx, env, 20, 64, 1.05, 6*time.Second)
}

// slowDrainScenario keeps long requests in flight on the workers while
// they leak at the standard rate: a worker recycled drains slowly, and
// the other, crossing its limit meanwhile, must be replaced all the same.
func slowDrainScenario(ctx context.Context, env *stressEnv) (row stressRow) {
	const workers, most = 2, 1.05
	long := pick(env, 8*time.Second, 4*time.Second)
	row = stressRow{Target: fmt.Sprintf("highest RSS ≤ %.2f×, 0 failed, ≥ 1 recycle", most), LimitBytes: leakLimit}
	c, err := startCluster(ctx, clusterSpec{bin: env.bin, workers: workers, limit: leakLimit})
	if err != nil {
		return row.notRun(err)
	}
	defer c.closeInto(&row)
	mark := c.mark()
	t := &tally{}
	holders := users{
		n: 4, spec: clientSpec{proto: http1, keepAlive: true, timeout: long + 10*time.Second},
		method: http.MethodGet, url: fmt.Sprintf("http://%s/work?ms=%d", c.addr, long.Milliseconds()),
	}
	leak := &paced{
		n: 32, spec: clientSpec{proto: http1, keepAlive: true},
		url: fmt.Sprintf("http://%s/work?leak=64", c.addr), perSec: workers * 20 * 1024 / 64,
	}
	l := startLoads(t, holders, leak)
	hold(ctx, pick(env, 14*time.Second, 7*time.Second), c.guard)
	l.finish()
	row.counted(t.totals(time.Time{}, time.Time{}))
	row.MaxRSSRatio = c.peakRatio()
	recycles := c.count(mark, eventlog.Event.IsRecycle)
	row.Pass = row.Failed == 0 && row.MaxRSSRatio <= most && recycles > 0
	row.notef("4 requests of %v always in flight; %d recycles", long, recycles)
	return row
}
