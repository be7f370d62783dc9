package metrics

import (
	"math"
	"testing"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"github.com/prometheus/client_golang/prometheus"
)

// TestEventsCountRecyclesByReason feeds the events of a cluster's life
// through OnEvent, as the supervisor's loop would, and reads the counters
// and histograms from a registry.
func TestEventsCountRecyclesByReason(t *testing.T) {
	const limit = 100 << 20
	m := New(cluster.Config{MaxMemory: limit, TotalMemory: 3 * limit})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	var passed int
	on := m.OnEvent(func(cluster.Event) { passed++ })

	t0 := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	events := []cluster.Event{
		// Slot 0: pid 10 is found on its way past its own limit (early, by
		// the lead: under it yet); 11 replaces it 250 ms later.
		{Kind: cluster.Started, Worker: 0, Pid: 10, Time: at(0)},
		{Kind: cluster.Ready, Worker: 0, Pid: 10, Time: at(10)},
		{Kind: cluster.OverLimit, Worker: 0, Pid: 10, Reason: drain.Memory, Memory: limit - 1, Time: at(1000)},
		{Kind: cluster.Started, Worker: 0, Pid: 11, Reason: drain.Memory, Time: at(1010)},
		{Kind: cluster.Ready, Worker: 0, Pid: 11, Time: at(1250)},
		{Kind: cluster.Draining, Worker: 0, Pid: 10, Reason: drain.Memory, Time: at(1250)},
		{Kind: cluster.ExitedPlanned, Worker: 0, Pid: 10, Reason: drain.Memory, Duration: 40 * time.Millisecond, Time: at(1290)},
		// Slot 1: pid 20, under its own limit, is the largest over the budget.
		{Kind: cluster.Started, Worker: 1, Pid: 20, Time: at(0)},
		{Kind: cluster.Ready, Worker: 1, Pid: 20, Time: at(10)},
		{Kind: cluster.OverLimit, Worker: 1, Pid: 20, Reason: drain.Memory, Memory: limit - 1, Total: 3*limit + 1, Time: at(2000)},
		{Kind: cluster.Started, Worker: 1, Pid: 21, Reason: drain.Memory, Time: at(2000)},
		{Kind: cluster.Ready, Worker: 1, Pid: 21, Time: at(2500)},
		{Kind: cluster.Draining, Worker: 1, Pid: 20, Reason: drain.Memory, Time: at(2500)},
		{Kind: cluster.ExitedPlanned, Worker: 1, Pid: 20, Reason: drain.Memory, Duration: 3 * time.Second, Time: at(5500)},
		// Slot 0 again: 11 passes the hard ceiling before its replacement serves.
		{Kind: cluster.OverLimit, Worker: 0, Pid: 11, Reason: drain.Memory, Memory: limit + 1, Time: at(3000)},
		{Kind: cluster.HardLimit, Worker: 0, Pid: 11, Reason: drain.Memory, Memory: limit * 2, Time: at(3010)},
		{Kind: cluster.Draining, Worker: 0, Pid: 11, Reason: drain.Memory, Time: at(3010)},
		{Kind: cluster.Started, Worker: 0, Pid: 12, Reason: drain.Memory, Time: at(3010)},
		{Kind: cluster.Ready, Worker: 0, Pid: 12, Time: at(3510)},
		{Kind: cluster.ExitedPlanned, Worker: 0, Pid: 11, Reason: drain.Memory, Duration: 10 * time.Millisecond, Time: at(3520)},
		// Slot 1: 21 hangs while serving; a hung starting worker is no recycle.
		{Kind: cluster.Hung, Worker: 1, Pid: 21, Time: at(4000)},
		{Kind: cluster.Started, Worker: 1, Pid: 22, Time: at(4000)},
		{Kind: cluster.ExitedPlanned, Worker: 1, Pid: 21, Reason: drain.Supervisor, Time: at(4010)},
		{Kind: cluster.Hung, Worker: 1, Pid: 22, Time: at(4500)},
		{Kind: cluster.ExitedAccidental, Worker: 1, Pid: 22, Time: at(4510)},
		// Age, a reload, and a crash; then shutdown, which is no recycle.
		{Kind: cluster.Started, Worker: 1, Pid: 23, Time: at(5000)},
		{Kind: cluster.Ready, Worker: 1, Pid: 23, Time: at(5010)},
		{Kind: cluster.Draining, Worker: 1, Pid: 23, Reason: drain.Age, Time: at(6000)},
		{Kind: cluster.Draining, Worker: 0, Pid: 12, Reason: drain.Reload, Time: at(6000)},
		{Kind: cluster.ExitedAccidental, Worker: 0, Pid: 13, Time: at(6100)},
		{Kind: cluster.ReloadFailed, Worker: 0, Reason: drain.Reload, Time: at(6200)},
		{Kind: cluster.GiveUp, Worker: 0, Time: at(6300)},
		{Kind: cluster.Draining, Worker: 0, Pid: 14, Reason: drain.Supervisor, Time: at(6400)},
		{Kind: cluster.Draining, Worker: 1, Pid: 24, Reason: drain.Signal, Time: at(6400)},
	}
	for _, e := range events {
		on(e)
	}
	if passed != len(events) {
		t.Errorf("next got %d events, want all %d", passed, len(events))
	}

	fs := gather(t, reg)
	for reason, want := range map[string]float64{
		"memory": 1, "total-memory": 1, "hard-limit": 1, "hung": 1, "age": 1, "reload": 1,
		"requests": 0, "manual": 0,
	} {
		if got := value(t, fs, "memdrain_recycles_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("memdrain_recycles_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if n := len(fs["memdrain_recycles_total"].GetMetric()); n != len(recycleReasons) {
		t.Errorf("%d recycle reasons reported, want %d (shutdown drains are no recycles)", n, len(recycleReasons))
	}
	for kind, want := range map[string]float64{"planned": 4, "accidental": 2} {
		if got := value(t, fs, "memdrain_worker_exits_total", map[string]string{"kind": kind}); got != want {
			t.Errorf("memdrain_worker_exits_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}
	if got := value(t, fs, "memdrain_give_ups_total", nil); got != 1 {
		t.Errorf("memdrain_give_ups_total = %v, want 1", got)
	}
	if got := value(t, fs, "memdrain_reload_failures_total", nil); got != 1 {
		t.Errorf("memdrain_reload_failures_total = %v, want 1", got)
	}
	if got := value(t, fs, "memdrain_events_total", map[string]string{"kind": "draining"}); got != 7 {
		t.Errorf("memdrain_events_total{kind=\"draining\"} = %v, want 7", got)
	}
	if got := value(t, fs, "memdrain_memory_budget_bytes", nil); got != 3*limit {
		t.Errorf("memdrain_memory_budget_bytes = %v, want %v", got, 3*limit)
	}

	// Three drains ended (40 ms, 3 s, 10 ms); the hung worker's kill is none.
	drains := histogram(t, fs, "memdrain_drain_duration_seconds")
	if drains.GetSampleCount() != 3 || !near(drains.GetSampleSum(), 3.05) {
		t.Errorf("drain histogram: count %d sum %v, want 3 and 3.05", drains.GetSampleCount(), drains.GetSampleSum())
	}
	// Over the limit until a new worker of the slot is ready: 250 ms,
	// 500 ms and 510 ms (from the OverLimit, not the HardLimit).
	ready := histogram(t, fs, "memdrain_over_limit_to_ready_seconds")
	if ready.GetSampleCount() != 3 || !near(ready.GetSampleSum(), 1.26) {
		t.Errorf("over-limit-to-ready histogram: count %d sum %v, want 3 and 1.26", ready.GetSampleCount(), ready.GetSampleSum())
	}
	if fs["memdrain_workers"] != nil {
		t.Error("memdrain_workers reported without a cluster to ask")
	}
	if len(m.procs) != 2 {
		t.Errorf("%d processes remembered, want 2: those not yet exited (12, 23); 14 and 24 were never seen started", len(m.procs))
	}
}

// near reports whether a sum of float seconds is b, up to rounding.
func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// BenchmarkOnEvent is the cost the collector adds to each decision of the
// supervisor's loop: one recycle's events.
func BenchmarkOnEvent(b *testing.B) {
	m := New(cluster.Config{MaxMemory: 100 << 20})
	on := m.OnEvent(nil)
	now := time.Now()
	b.ReportAllocs()
	for i := range b.N {
		old, next := 2*i+1, 2*i+2
		on(cluster.Event{Kind: cluster.OverLimit, Worker: 0, Pid: old, Reason: drain.Memory, Time: now})
		on(cluster.Event{Kind: cluster.Started, Worker: 0, Pid: next, Reason: drain.Memory, Time: now})
		on(cluster.Event{Kind: cluster.Ready, Worker: 0, Pid: next, Time: now})
		on(cluster.Event{Kind: cluster.Draining, Worker: 0, Pid: old, Reason: drain.Memory, Time: now})
		on(cluster.Event{Kind: cluster.ExitedPlanned, Worker: 0, Pid: old, Reason: drain.Memory, Time: now})
	}
}
