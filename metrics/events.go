package metrics

import (
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
)

// procInfo is what the events told of one worker process.
type procInfo struct {
	state cluster.WorkerState
	total bool // its OverLimit was the cluster's TotalMemory budget, not its own limit
	hard  bool // drained past HardMemory
	hung  bool // killed as hung: its exit ends no drain
}

// overLimit is a slot's worker over its limit, waiting for a replacement.
type overLimit struct {
	pid int
	at  time.Time
}

// OnEvent returns a function for cluster.Config.OnEvent that records each
// event in m and then passes it to next, if next is not nil:
//
//	cfg.OnEvent = m.OnEvent(cfg.OnEvent)
//
// The supervisor's loop calls it, so it never waits: it takes m's lock only
// to update a few counters and maps, and nothing else holds that lock
// (Collect does not take it). It must see every event from the master's
// start (set it before cluster.New): a process it did not see start is
// counted without what it learnt on the way (a TotalMemory recycle counts
// as memory, a serving worker killed as hung as no recycle).
func (m *Collector) OnEvent(next func(cluster.Event)) func(cluster.Event) {
	return func(e cluster.Event) {
		m.record(e)
		if next != nil {
			next(e)
		}
	}
}

// record is the one writer of m.procs and m.over.
func (m *Collector) record(e cluster.Event) {
	m.events.WithLabelValues(e.Kind.String()).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.procs[e.Pid]
	if p == nil {
		p = &procInfo{} // a process started before m saw events; not kept
	}
	switch e.Kind {
	case cluster.Started:
		m.procs[e.Pid] = &procInfo{state: cluster.StateStarting}
	case cluster.Ready:
		p.state = cluster.StateServing
		// The slot's over-limit worker is replaced once any other worker
		// of the slot is ready: its replacement, or, if it crashed or was
		// drained past the hard ceiling, whichever worker serves next.
		if o, ok := m.over[e.Worker]; ok && o.pid != e.Pid {
			m.replacements.Observe(e.Time.Sub(o.at).Seconds())
			delete(m.over, e.Worker)
		}
	case cluster.OverLimit:
		if _, ok := m.over[e.Worker]; !ok {
			m.over[e.Worker] = overLimit{pid: e.Pid, at: e.Time}
		}
		p.total = e.Total > 0
	case cluster.HardLimit:
		p.hard = true
	case cluster.Draining:
		p.state = cluster.StateDraining
		if r := recycleReason(e.Reason, p); r != "" {
			m.recycles.WithLabelValues(r).Inc()
		}
	case cluster.Hung:
		if p.state == cluster.StateServing {
			m.recycles.WithLabelValues("hung").Inc()
		}
		p.hung = true
	case cluster.ExitedPlanned:
		if !p.hung {
			m.drains.Observe(e.Duration.Seconds())
		}
		m.exits.WithLabelValues("planned").Inc()
		delete(m.procs, e.Pid)
	case cluster.ExitedAccidental:
		m.exits.WithLabelValues("accidental").Inc()
		delete(m.procs, e.Pid)
	case cluster.GiveUp:
		m.giveUps.Inc()
	case cluster.ReloadFailed:
		m.reloadFailures.Inc()
	}
}

// recycleReason names why a draining worker was replaced, or "" for a
// drain that replaces nothing (shutdown).
func recycleReason(r drain.Reason, p *procInfo) string {
	switch r {
	case drain.Memory:
		switch {
		case p.hard:
			return "hard-limit"
		case p.total:
			return "total-memory"
		}
		return "memory"
	case drain.Signal, drain.Supervisor:
		return ""
	}
	return r.String()
}
