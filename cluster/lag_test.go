package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestTheLongestLagIsPlannedForAndForgottenByHalves: a slow recycle must
// raise the lead at once and for a while, not be averaged away by the fast
// ones after it; and it must not stay forever.
func TestTheLongestLagIsPlannedForAndForgottenByHalves(t *testing.T) {
	const halfLife = 10 * time.Second
	t0 := time.Now()
	var l lag
	assert.Zero(t, l.lead(t0, halfLife), "nothing learned yet")

	// 20 MiB gained at 100 MiB/s after the decision: 200 ms of growth.
	l.learn(snapshot{at: t0, rss: 40 << 20, rate: 100 << 20}, 60<<20, t0.Add(300*time.Millisecond), halfLife)
	exit := t0.Add(300 * time.Millisecond)
	assert.Equal(t, 200*time.Millisecond, l.lead(exit, halfLife))

	// A fast recycle right after does not lower it.
	l.learn(snapshot{at: exit, rss: 60 << 20, rate: 100 << 20}, 61<<20, exit.Add(20*time.Millisecond), halfLife)
	assert.InDelta(t, float64(200*time.Millisecond), float64(l.lead(exit.Add(20*time.Millisecond), halfLife)), float64(time.Millisecond))

	// One half-life later, half of it is left.
	assert.InDelta(t, float64(100*time.Millisecond), float64(l.lead(exit.Add(20*time.Millisecond+halfLife), halfLife)), float64(time.Millisecond))

	// A gain faster than the rate allows counts for no longer than the
	// worker lived after the decision.
	var fast lag
	fast.learn(snapshot{at: t0, rss: 0, rate: 1 << 20}, 100<<20, t0.Add(50*time.Millisecond), halfLife)
	assert.Equal(t, 50*time.Millisecond, fast.lead(t0.Add(50*time.Millisecond), halfLife))

	// A worker that was not growing, or whose peak is unknown, teaches
	// nothing.
	var none lag
	none.learn(snapshot{}, 100<<20, t0, halfLife)
	none.learn(snapshot{at: t0, rss: 1, rate: 1}, 0, t0, halfLife)
	assert.Zero(t, none.lead(t0, halfLife))
}

// TestTheLeadNeverHasAWorkerReplacedBelowHalfItsLimit: after a very slow
// recycle the lag is long; planned for in full, it had each new worker
// replaced at its second sample, a fifth of its limit in. The lead is cut
// to half the limit's worth of growth at the worker's rate or, before it
// has one, the cluster's.
func TestTheLeadNeverHasAWorkerReplacedBelowHalfItsLimit(t *testing.T) {
	m, _ := unitMaster(t, Config{MaxMemory: 64 << 20})
	now := time.Now()
	m.recycleLag = lag{longest: time.Second, at: now}
	p := &proc{}
	const worst = 400 << 20 // bytes per second
	assert.Equal(t, 80*time.Millisecond, m.lead(p, now, worst), "32 MiB at 400 MiB/s")
	assert.Equal(t, time.Second, m.lead(p, now, 0), "no rate known yet: nothing to cap with")

	m.recycleLag = lag{longest: 10 * time.Millisecond, at: now}
	m.readyTime = 30 * time.Millisecond
	assert.Equal(t, 30*time.Millisecond, m.lead(p, now, worst), "never less than the start-up time")
}
