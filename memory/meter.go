package memory

import "time"

// MinCheckInterval is the shortest delay a Meter ever asks for between two
// samples.
const MinCheckInterval = 10 * time.Millisecond

// fullIntervalHeadroom is the headroom, as a share of the limit, below
// which a Meter shortens its longest wait in proportion: at 10 % of the
// limit left it waits at most 0.4 Interval.
const fullIntervalHeadroom = 0.25

// A Meter decides, one memory sample at a time, whether a process has passed
// its limit and how long to wait before the next sample.
//
// A fixed interval cannot both catch a fast leak close to the limit and
// stay cheap: at 20 MB/s, a 1 s interval overshoots a 150 MiB limit by up
// to 13 %. A Meter therefore estimates the growth rate and waits half the
// time the process needs to reach its limit at that rate, never less than
// MinCheckInterval and never more than Interval. Far from the limit it
// samples at Interval; approaching it, the waits shrink geometrically, so a
// crossing is seen within about MinCheckInterval. Within the last quarter
// of the limit the wait is also capped by the headroom alone, because a
// process can stand still just below its limit (its Go soft limit holding
// it) and then resume growing.
//
// A process the Meter has just started watching has no growth rate yet,
// and may be leaking fast from its first moment: waiting a whole Interval
// for the second sample let a worker leaking 200 MB/s reach several times
// its limit. So the longest wait starts at MinCheckInterval and doubles
// with each sample until it reaches Interval; a process that stays flat
// costs about log2(Interval/MinCheckInterval) extra samples in its life.
//
// The zero Meter never reports a process over its limit. A Meter is not safe
// for concurrent use.
type Meter struct {
	// Limit is the memory limit in bytes. Zero means no limit.
	Limit uint64
	// Consecutive is how many samples in a row must be over the limit
	// before Observe reports it; zero means 1. More than one rides out a
	// brief spike, at the cost of reacting later.
	Consecutive int
	// Interval is the longest wait between samples; zero means 1 s.
	Interval time.Duration
	// Lead makes Observe report a process as over its limit when, at its
	// current growth rate, it will pass the limit within Lead. A supervisor
	// sets it to the time a replacement needs to get ready, so the
	// replacement serves before the old process crosses the limit.
	Lead time.Duration
	// WorstRate, in bytes per second, is how fast the process may start
	// growing at any moment, whatever its own past says. The Meter
	// schedules its samples for the higher of WorstRate and the rate it
	// measured, but reports the process over its limit only on what it
	// measured (and Lead). A supervisor sets it to the growth of all its
	// processes together: when one of them drains, its clients move to
	// the others, and a process that grew slowly or not at all may take
	// the whole load between two samples. Zero means no such bound.
	WorstRate float64

	over   int
	ramp   time.Duration // the longest wait after the last sample; zero before the first
	last   uint64
	lastAt time.Time
	rate   float64 // bytes per second, smoothed; zero when not growing
}

// Observe records a sample of bytes taken at now. It reports whether the
// process counts as over its limit, and how long to wait before the next
// sample.
func (m *Meter) Observe(now time.Time, bytes uint64) (over bool, next time.Duration) {
	m.updateRate(now, bytes)
	interval := m.Interval
	if interval <= 0 {
		interval = time.Second
	}
	if m.Limit == 0 {
		return false, interval
	}
	longest := m.rampUp(interval)
	projected := float64(bytes) + m.rate*m.Lead.Seconds()
	if projected >= float64(m.Limit) {
		m.over++
	} else {
		m.over = 0
	}
	consecutive := max(m.Consecutive, 1)
	switch {
	case m.over >= consecutive:
		return true, min(MinCheckInterval, interval)
	case m.over > 0: // confirm a crossing quickly
		return false, min(MinCheckInterval, interval)
	}
	// Close to the limit, the headroom alone caps the wait, whatever the
	// rate says. A rate measured on a plateau (the garbage collector
	// holding the heap at a soft limit just below) says "no growth" right
	// before the growth resumes.
	headroom := (float64(m.Limit) - projected) / float64(m.Limit)
	wait := longest.Seconds() * min(1, headroom/fullIntervalHeadroom)
	if rate := max(m.rate, m.WorstRate); rate > 0 {
		// Half the time to the limit at the current rate, in seconds: a
		// slow rate makes the time too long for a time.Duration.
		wait = min(wait, (float64(m.Limit)-projected)/rate/2)
	}
	return false, max(time.Duration(wait*float64(time.Second)), MinCheckInterval)
}

// rampUp returns the longest wait after this sample: MinCheckInterval
// after the first, doubling with each sample after it, up to interval.
func (m *Meter) rampUp(interval time.Duration) time.Duration {
	switch {
	case m.ramp == 0:
		m.ramp = min(MinCheckInterval, interval)
	case m.ramp <= interval/2:
		m.ramp *= 2
	default:
		m.ramp = interval
	}
	return m.ramp
}

// Rate returns the smoothed growth rate in bytes per second, zero when the
// process is not growing.
func (m *Meter) Rate() float64 { return m.rate }

// Reset forgets the history, as for a new process.
func (m *Meter) Reset() {
	m.over, m.ramp, m.last, m.lastAt, m.rate = 0, 0, 0, time.Time{}, 0
}

func (m *Meter) updateRate(now time.Time, bytes uint64) {
	defer func() { m.last, m.lastAt = bytes, now }()
	if m.lastAt.IsZero() {
		return
	}
	elapsed := now.Sub(m.lastAt).Seconds()
	if elapsed <= 0 {
		return
	}
	sample := (float64(bytes) - float64(m.last)) / elapsed
	// A rise is taken at once: under-estimating a leak that just started
	// means sampling too late. A fall (the garbage collector returned pages,
	// the load stopped) only pulls the estimate down by half each time, and
	// a rate under a byte a second is none.
	const weight = 0.5
	m.rate = max(sample, weight*sample+(1-weight)*m.rate)
	if m.rate < 1 {
		m.rate = 0
	}
}
