package cluster

import (
	"math"
	"time"

	"github.com/memdrain/memdrain/memory"
)

// A worker goes on growing after the master decides to replace it: its
// replacement is forked, executed and gets ready, then the worker drains,
// serving the requests already on their way over its connections. A Meter
// whose Lead covered the replacement's start-up alone let a worker leaking
// 200 MiB/s reach 1.28× its limit: the fork and exec, not counted in the
// start-up, took up to 60 ms on a loaded machine, and a drain took up to
// 340 ms, the worker growing through it.
//
// So the master measures, for every worker that exits after it was found
// over its limit, how long it went on growing: the memory it gained from
// the decision to its peak (the kernel's count, see peakRSS), over the
// growth rate its Meter had measured at the decision. The Meter's Lead
// covers the longest such lag seen lately (see lag).
//
// The hard ceiling gets no such lead. Tried, with the lag measured from
// the order to drain, it drained workers at a quarter of their limit
// whenever a drain had been slow: with no replacement ready, their load
// went to the others, which then crossed their own ceilings, and the
// fast-leak benchmark reached 1.47× instead of 1.25×. The ceiling is the
// last resort, at HardMemory as documented.

// snapshot is a worker's memory when the master found it over its limit.
type snapshot struct {
	at   time.Time
	rss  uint64  // resident memory, in the unit of peakRSS whatever Config.Sampler is
	rate float64 // its Meter's growth rate then, bytes per second
}

// snapshot takes p's resident memory and growth rate at now. sampled was
// just taken with Config.Sampler, and is used if that is memory.RSS; any
// other Sampler counts memory differently from the peak it is compared
// with, so RSS is read afresh. The zero snapshot, when p is not growing or
// cannot be read, teaches nothing.
func (m *master) snapshot(p *proc, now time.Time, sampled uint64) snapshot {
	rate := p.meter.Rate()
	if rate <= 0 {
		return snapshot{}
	}
	rss := sampled
	if m.cfg.Sampler != memory.RSS {
		var err error
		if rss, err = memory.RSS.Sample(p.pid); err != nil {
			return snapshot{}
		}
	}
	return snapshot{at: now, rss: rss, rate: rate}
}

// lag is the longest time workers went on growing after a decision,
// halved every halfLife since it was seen, as growth keeps the highest
// rate. An average would forget a slow start or drain within a few
// recycles, and on a loaded machine they come back every few seconds;
// measured, the averaged lag was 20 ms a moment before a drain of 260 ms
// took a worker to 1.38× its limit.
type lag struct {
	longest time.Duration
	at      time.Time
}

// lagHalfLife in CheckIntervals: the lag of one slow recycle is planned
// for over the next several seconds at the default CheckInterval.
const lagHalfLife = 10

// learn folds in how long a worker went on growing after snapshot s,
// given its peak and when it exited. The time is capped by the time it
// lived after s: a worker that gained more than its rate allows in that
// time grew faster, and that is WorstRate's business.
func (l *lag) learn(s snapshot, peak uint64, exit time.Time, halfLife time.Duration) {
	if s.rate <= 0 || peak == 0 {
		return
	}
	var grew float64
	if peak > s.rss {
		grew = float64(peak - s.rss)
	}
	x := min(time.Duration(grew/s.rate*float64(time.Second)), exit.Sub(s.at))
	l.longest, l.at = max(l.lead(exit, halfLife), x), exit
}

// lead returns the longest lag, decayed to now.
func (l *lag) lead(now time.Time, halfLife time.Duration) time.Duration {
	if l.longest == 0 || halfLife <= 0 {
		return l.longest
	}
	return time.Duration(float64(l.longest) * math.Exp2(-max(now.Sub(l.at), 0).Seconds()/halfLife.Seconds()))
}

// lead returns p's Meter's Lead at now: the recycle lag, or the start-up
// time until a worker exited to teach it. It is capped so that the lead
// alone never has p replaced below about half its limit: after a very
// slow recycle, a lead covering it had every new worker replaced at its
// second sample (at a fifth of its limit), and the forks of so many starts
// slowed the next ones further. The cap counts with the faster of p's rate
// and worst, the cluster's (see growth): p's own is unknown before its
// second sample, and a measured rate jumps at once on a rise.
func (m *master) lead(p *proc, now time.Time, worst float64) time.Duration {
	lead := max(m.readyTime, m.recycleLag.lead(now, m.lagHalfLife()))
	if rate := max(p.meter.Rate(), worst); rate > 0 && m.cfg.MaxMemory > 0 {
		lead = min(lead, time.Duration(float64(m.cfg.MaxMemory)/2/rate*float64(time.Second)))
	}
	return lead
}

func (m *master) lagHalfLife() time.Duration { return lagHalfLife * m.cfg.CheckInterval }
