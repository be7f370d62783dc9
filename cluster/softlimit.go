package cluster

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// raiseLimitAt is the share of the soft limit the live heap must reach for
// the limit to be raised.
const raiseLimitAt = 0.95

// softLimit sets the worker's Go soft memory limit below its recycle limit,
// so the garbage collector works harder before garbage alone could trigger
// a recycle, and raises it to the recycle limit once the live heap nears it.
//
// A soft limit the live heap has reached has done its job: the collector
// has shown that the memory is in use, so the worker is leaking for real
// and will be recycled at its limit. Kept, it would make the collector run
// almost without pause until then, freeing nothing. Lifted altogether, it
// would let the heap jump to twice the live heap, past the recycle limit
// between two samples (1.20× the limit, measured at 48 MiB). Raised to the
// recycle limit, garbage can fill the heap only up to where the worker is
// replaced anyway. It returns a function that stops the watch.
func softLimit(limit, recycleAt int64) (stop func()) {
	debug.SetMemoryLimit(limit)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	return every(100*time.Millisecond, func() bool {
		metrics.Read(live)
		if live[0].Value.Kind() == metrics.KindUint64 && float64(live[0].Value.Uint64()) >= raiseLimitAt*float64(limit) {
			debug.SetMemoryLimit(recycleAt)
			return false
		}
		return true
	})
}
