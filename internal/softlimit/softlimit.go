// Package softlimit sets a process's Go soft memory limit below its
// recycle limit, for a cluster worker and for standalone.ListenAndServe alike.
// It imports only the standard library, so that drain may use it.
package softlimit

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/memdrain/memdrain/internal/tick"
)

// DefaultRatio is the soft limit's default share of the recycle limit.
const DefaultRatio = 0.9

// raiseAt is the share of the soft limit the live heap must reach for the
// limit to be raised.
const raiseAt = 0.95

// every is how often the live heap is compared with the soft limit.
const every = 100 * time.Millisecond

// Of returns ratio × recycleAt in bytes, as far as an int64 goes, for Start.
func Of(recycleAt uint64, ratio float64) int64 {
	if f := float64(recycleAt) * ratio; f < math.MaxInt64 {
		return int64(f)
	}
	return math.MaxInt64
}

// Start sets this process's Go soft memory limit to limit, so the garbage
// collector works harder before garbage alone could trigger a recycle, and
// raises it to recycleAt once the live heap nears it. It does nothing, and
// reports false, when GOMEMLIMIT is set: the operator's limit wins. stop
// ends the watch and puts back the limit from before Start.
//
// A soft limit the live heap has reached has done its job: the collector
// has shown that the memory is in use, so the process is leaking for real
// and will be recycled at its limit. Kept, it would make the collector run
// almost without pause until then, freeing nothing. Lifted altogether, it
// would let the heap jump to twice the live heap, past the recycle limit
// between two samples (1.20× the limit, measured at 48 MiB). Raised to the
// recycle limit, garbage can fill the heap only up to where the process is
// replaced anyway.
func Start(limit, recycleAt int64) (stop func(), set bool) {
	if _, env := os.LookupEnv("GOMEMLIMIT"); env || limit <= 0 {
		return func() {}, false
	}
	before := debug.SetMemoryLimit(limit)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	stopWatch := tick.Every(every, func() bool {
		metrics.Read(live)
		if live[0].Value.Kind() == metrics.KindUint64 && float64(live[0].Value.Uint64()) >= raiseAt*float64(limit) {
			debug.SetMemoryLimit(recycleAt)
			return false
		}
		return true
	})
	return func() {
		stopWatch()
		debug.SetMemoryLimit(before)
	}, true
}
