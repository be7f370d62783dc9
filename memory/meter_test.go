package memory

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMeterWithoutALimitNeverReportsOver(t *testing.T) {
	var m Meter
	over, next := m.Observe(time.Now(), 1<<40)
	assert.False(t, over)
	assert.Equal(t, time.Second, next)
}

// TestMeterCatchesAFastLeakCloseToTheLimit simulates a process leaking
// 20 MB/s towards a 150 MiB limit and follows the Meter's schedule: the
// crossing must be seen with little overshoot, with few samples.
func TestMeterCatchesAFastLeakCloseToTheLimit(t *testing.T) {
	const rate = 20e6 // bytes per second
	const limit = 150 << 20
	m := Meter{Limit: limit, Interval: time.Second}
	start := time.Unix(0, 0)
	now := start
	samples := 0
	for {
		bytes := uint64(30<<20 + rate*now.Sub(start).Seconds())
		over, next := m.Observe(now, bytes)
		samples++
		if over {
			overshoot := float64(bytes)/limit - 1
			assert.Less(t, overshoot, 0.01, "seen at %d bytes", bytes)
			assert.GreaterOrEqual(t, bytes, uint64(limit))
			break
		}
		assert.GreaterOrEqual(t, next, MinCheckInterval)
		assert.LessOrEqual(t, next, time.Second)
		now = now.Add(next)
		if samples > 1000 {
			t.Fatal("the Meter never reported the crossing")
		}
	}
	// A fixed 10 ms interval would need ~630 samples for the same precision.
	assert.Less(t, samples, 30, "samples taken")
}

// TestMeterSamplesSlowlyWhenMemoryIsFlat: a flat process costs a few
// samples while the Meter is new (see TestMeterSamplesSoonAfterItsFirstSample),
// then one an Interval.
func TestMeterSamplesSlowlyWhenMemoryIsFlat(t *testing.T) {
	m := Meter{Limit: 100 << 20, Interval: 500 * time.Millisecond}
	now := time.Unix(0, 0)
	var waits []time.Duration
	for range 12 {
		over, next := m.Observe(now, 10<<20)
		assert.False(t, over)
		waits = append(waits, next)
		now = now.Add(next)
	}
	assert.Equal(t, []time.Duration{10, 20, 40, 80, 160, 320, 500, 500, 500, 500, 500, 500},
		scaled(waits, time.Millisecond), "doubling from MinCheckInterval to Interval")
	assert.Zero(t, m.Rate())
	m.Reset()
	_, next := m.Observe(now, 10<<20)
	assert.Equal(t, MinCheckInterval, next, "after Reset the Meter is new again")
}

func scaled(ds []time.Duration, unit time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d / unit
	}
	return out
}

// TestMeterSamplesSoonAfterItsFirstSample: after one sample the Meter
// knows no growth rate. A second sample a whole Interval later let a
// worker leaking from its first moment reach several times its limit
// before the Meter knew it grew at all.
func TestMeterSamplesSoonAfterItsFirstSample(t *testing.T) {
	m := Meter{Limit: 64 << 20, Interval: time.Second}
	_, next := m.Observe(time.Unix(0, 0), 10<<20)
	assert.Equal(t, MinCheckInterval, next)
}

// TestMeterCatchesALeakFromTheFirstSample follows the Meter's schedule
// for a process leaking from the moment it is first sampled, at the
// issue's two rates (20 and 200 MB/s) towards a 64 MiB limit with a 1 s
// Interval: the crossing must be seen close to the limit.
func TestMeterCatchesALeakFromTheFirstSample(t *testing.T) {
	const limit = 64 << 20
	for _, rate := range []float64{20e6, 200e6} {
		m := Meter{Limit: limit, Interval: time.Second}
		start := time.Unix(0, 0)
		now := start
		for samples := 1; ; samples++ {
			bytes := uint64(10<<20 + rate*now.Sub(start).Seconds())
			over, next := m.Observe(now, bytes)
			if over {
				assert.Less(t, float64(bytes)/limit, 1.02, "at %.0f MB/s, seen at %d bytes", rate/1e6, bytes)
				assert.Less(t, samples, 30, "at %.0f MB/s", rate/1e6)
				break
			}
			require.Less(t, samples, 1000, "the Meter never reported the crossing")
			now = now.Add(next)
		}
	}
}

func TestMeterNeedsConsecutiveSamplesOver(t *testing.T) {
	m := Meter{Limit: 100, Consecutive: 3}
	now := time.Unix(0, 0)
	step := func(bytes uint64) bool {
		now = now.Add(time.Second)
		over, _ := m.Observe(now, bytes)
		return over
	}
	assert.False(t, step(150))
	assert.False(t, step(150))
	assert.False(t, step(90), "a dip resets the streak")
	assert.False(t, step(150))
	assert.False(t, step(150))
	assert.True(t, step(150))
}

func TestMeterLeadReportsAProjectedCrossing(t *testing.T) {
	m := Meter{Limit: 100 << 20, Lead: 500 * time.Millisecond}
	now := time.Unix(0, 0)
	m.Observe(now, 80<<20)
	// +10 MiB in 250 ms is 40 MiB/s: within 500 ms it would pass 100 MiB.
	over, _ := m.Observe(now.Add(250*time.Millisecond), 90<<20)
	assert.True(t, over)
	m.Reset()
	assert.Zero(t, m.Rate())
	over, _ = m.Observe(now, 90<<20)
	assert.False(t, over, "after Reset there is no rate to project with")
}

// TestMeterSlowsDownOnceGrowthStops: after a leak stops, the estimated rate
// decays towards zero; a tiny rate must mean a long wait, not an overflowed
// one that falls back to the shortest.
func TestMeterSlowsDownOnceGrowthStops(t *testing.T) {
	m := Meter{Limit: 1 << 30, Interval: time.Second}
	now := time.Unix(0, 0)
	bytes := uint64(100 << 20)
	for range 10 { // growing at 10 MiB/s
		now = now.Add(100 * time.Millisecond)
		bytes += 1 << 20
		m.Observe(now, bytes)
	}
	short := 0
	for range 2000 { // flat from here on
		_, next := m.Observe(now, bytes)
		if next < time.Second {
			short++
		}
		now = now.Add(next)
	}
	assert.Less(t, short, 20, "samples at a short wait once memory is flat")
	assert.Zero(t, m.Rate())
}

// TestMeterReactsAtOnceWhenALeakStarts: an idle process whose memory
// suddenly grows must be sampled sooner at once, not after the estimate
// has caught up.
func TestMeterReactsAtOnceWhenALeakStarts(t *testing.T) {
	m := Meter{Limit: 48 << 20, Interval: time.Second}
	now := time.Unix(0, 0)
	m.Observe(now, 9<<20)
	m.Observe(now.Add(time.Second), 9<<20)
	// One second of a 20 MB/s leak: 28 MiB, 20 MiB from the limit.
	_, next := m.Observe(now.Add(2*time.Second), 28<<20)
	assert.InDelta(t, 20e6, m.Rate(), 1e6)
	assert.Less(t, next, 600*time.Millisecond, "half the ~1 s left to the limit")
}

// TestMeterDoesNotTrustAPlateauCloseToTheLimit: a worker held flat just
// below its limit (by its Go soft limit) must still be sampled often, for
// its growth resumes the moment the soft limit gives.
func TestMeterDoesNotTrustAPlateauCloseToTheLimit(t *testing.T) {
	m := Meter{Limit: 100 << 20, Interval: time.Second}
	now := time.Unix(0, 0)
	m.Observe(now, 50<<20)
	now = now.Add(time.Second)
	m.Observe(now, 90<<20) // fast growth...
	var next time.Duration
	for range 20 { // ...then a plateau at 90 %
		now = now.Add(time.Second)
		_, next = m.Observe(now, 90<<20)
	}
	assert.LessOrEqual(t, next, 400*time.Millisecond, "10 %% headroom caps the wait at 0.4 Interval")
	assert.GreaterOrEqual(t, next, MinCheckInterval)
	_, far := m.Observe(now, 50<<20)
	assert.Equal(t, time.Second, far, "with half the limit left, the full interval")
}

// TestMeterPlansForWorstRate: a process idle so far, its waits ramped up
// to Interval, takes over the whole load of a cluster (its sibling
// drained; 400 MiB/s between them in the harness). Planned for
// its own rate it would be sampled a whole Interval later, hundreds of
// MiB past its limit; planned for WorstRate, its crossing is seen close
// to the limit. WorstRate alone never reports it over.
func TestMeterPlansForWorstRate(t *testing.T) {
	const limit = 64 << 20
	const worst = 400 << 20 // bytes per second
	for _, worstRate := range []float64{0, worst} {
		m := Meter{Limit: limit, Interval: time.Second, WorstRate: worstRate}
		now := time.Unix(0, 0)
		var next time.Duration
		for range 12 { // idle at 10 MiB: the waits ramp up to Interval
			var over bool
			over, next = m.Observe(now, 10<<20)
			require.False(t, over, "WorstRate alone reports nothing over")
			now = now.Add(next)
		}
		if worstRate == 0 {
			assert.Equal(t, time.Second, next, "without WorstRate: the idle process's own rate")
			continue
		}
		assert.LessOrEqual(t, next, 70*time.Millisecond, "half the time to the limit at WorstRate")
		start := now // the load arrives here, at WorstRate
		for samples := 1; ; samples++ {
			bytes := uint64(10<<20 + worst*now.Sub(start).Seconds())
			over, next := m.Observe(now, bytes)
			if over {
				assert.Less(t, float64(bytes)/limit, 1.07, "seen at %.1f MiB", float64(bytes)/(1<<20))
				break
			}
			require.Less(t, samples, 1000, "the Meter never reported the crossing")
			now = now.Add(next)
		}
	}
}
