package cluster

import (
	"time"

	"github.com/memdrain/memdrain/drain"
)

// A worker goes on growing after the master decides to replace it: its
// replacement is forked, executed and gets ready, then the worker drains,
// serving the requests already on their way over its connections. A Meter
// whose Lead covered the replacement's start-up alone let a worker leaking
// 200 MiB/s reach 1.28× its limit: the fork and exec, not counted in the
// start-up, took up to 60 ms on a loaded machine, and the worker kept
// growing at its full rate for up to 120 ms of its drain.
//
// So the master measures, for every worker that exits after a drain, how
// long it went on growing: the memory it gained from a decision to its
// peak (the kernel's count, see peakRSS), over the growth rate its Meter
// had measured at the decision. Two such lags are kept: from the decision
// to replace it (for the Meter's Lead), and from the order to drain (for
// the hard ceiling's, since past HardMemory a worker is drained at once,
// and grows through its drain all the same).

// snapshot is a worker's memory when the master decided something about
// it.
type snapshot struct {
	at   time.Time
	rss  uint64  // resident memory, in the unit of peakRSS whatever Config.Sampler is
	rate float64 // its Meter's growth rate then, bytes per second
}

// snapshot takes p's resident memory and growth rate at now. rss is a
// sample just taken with Config.Sampler, used if that is drain.RSS; any
// other Sampler counts memory differently from the peak it is compared
// with, so RSS is read afresh. The zero snapshot, when p is not growing or
// cannot be read, teaches nothing.
func (m *master) snapshot(p *proc, now time.Time, rss uint64) snapshot {
	rate := p.meter.Rate()
	if rate <= 0 || p.pid == 0 {
		return snapshot{}
	}
	if rss == 0 || m.cfg.Sampler != drain.RSS {
		var err error
		if rss, err = drain.RSS.Sample(p.pid); err != nil {
			return snapshot{}
		}
	}
	return snapshot{at: now, rss: rss, rate: rate}
}

// lag is a smoothed duration with its smoothed mean deviation, as TCP
// keeps a round-trip time (RFC 6298).
type lag struct {
	avg, dev time.Duration
	known    bool
}

// learn folds in how long a worker went on growing after the snapshot s,
// given its peak and when it exited. The time is capped by the time it
// lived after s: a worker that gained more than its rate allows in that
// time grew faster, and that is WorstRate's business.
func (l *lag) learn(s snapshot, peak uint64, exit time.Time) {
	if s.rate <= 0 || peak == 0 {
		return
	}
	var grew float64
	if peak > s.rss {
		grew = float64(peak - s.rss)
	}
	x := min(time.Duration(grew/s.rate*float64(time.Second)), exit.Sub(s.at))
	if !l.known {
		l.avg, l.dev, l.known = x, x/2, true
		return
	}
	d := x - l.avg
	if d < 0 {
		d = -d
	}
	l.dev = (3*l.dev + d) / 4
	l.avg = (3*l.avg + x) / 4
}

// lead returns the time to plan for: the average lag and twice its
// deviation, so that a start or drain slower than usual (a loaded machine
// is rarely loaded evenly) is covered too; zero until one was measured.
func (l *lag) lead() time.Duration { return l.avg + 2*l.dev }

// lags are the two lags the master plans for (see above).
type lags struct {
	recycle lag // from the decision to replace a worker over its limit
	drain   lag // from the order to drain a serving worker
}

// learn takes what p, which exited after a drain at exit, teaches: peak is
// its highest resident memory, 0 if unknown.
func (ls *lags) learn(p *proc, peak uint64, exit time.Time) {
	ls.recycle.learn(p.decided, peak, exit)
	ls.drain.learn(p.drained, peak, exit)
}

// leads returns the Meter's Lead and the hard ceiling's. Until a worker
// exited to teach the recycle lag, the start-up time alone stands for it.
func (m *master) leads() (limit, ceiling time.Duration) {
	return max(m.readyTime, m.lags.recycle.lead()), m.lags.drain.lead()
}
