package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestGrowthOutlivesTheWorkerThatGrew: a worker growing 400 MiB/s exits
// (recycled), and its rate leaves the sum; its load has gone on to the
// others, whose Meters have not measured it yet. The rate planned for
// is kept, halved every CheckInterval, and a higher sum takes over at once.
func TestGrowthOutlivesTheWorkerThatGrew(t *testing.T) {
	const rate = 400 << 20
	var g growth
	now := time.Unix(0, 0)
	assert.Equal(t, float64(rate), g.update(now, rate, time.Second))
	assert.Equal(t, float64(rate), g.update(now, 0, time.Second), "the worker exited: its rate is kept")
	assert.InDelta(t, rate/2, g.update(now.Add(time.Second), 0, time.Second), 1, "halved after CheckInterval")
	assert.InDelta(t, rate/8, g.update(now.Add(3*time.Second), 0, time.Second), 1)
	assert.Equal(t, float64(rate), g.update(now.Add(3*time.Second), rate, time.Second), "a higher sum at once")
}
