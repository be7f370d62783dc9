package cluster

import (
	"math"
	"time"
)

// growth is how fast the workers' memory grows, all of them together: the
// fastest any one of them may start to grow without warning. Load moves
// between workers at once: the clients of a worker that drains go to the
// others, its idle connections are handed to one of them, and a worker
// that had no load at all may take the whole of it. Each worker's Meter
// plans its samples for this rate (memory.Meter.WorstRate), not only for
// its own past; measured on its own, a worker that grew at 30 MiB/s was
// next sampled 290 ms later, by when it had taken its sibling's load and
// reached twice its limit.
//
// A worker's rate leaves the sum when it exits, though its load went on
// to the others before their Meters could measure it; so the highest sum
// is kept, halved every CheckInterval, while the current sum is lower.
type growth struct {
	rate float64 // bytes per second
	at   time.Time
}

// update folds in sum, the workers' measured rates added up at now, and
// returns the rate to plan for.
func (g *growth) update(now time.Time, sum float64, halfLife time.Duration) float64 {
	if !g.at.IsZero() && halfLife > 0 {
		g.rate *= math.Exp2(-now.Sub(g.at).Seconds() / halfLife.Seconds())
	}
	g.rate, g.at = max(g.rate, sum), now
	return g.rate
}
