package cluster

import (
	"log/slog"
	"math"
	"runtime"
	"time"

	"github.com/memdrain/memdrain/internal/envvar"
	"github.com/memdrain/memdrain/internal/softlimit"
	"github.com/memdrain/memdrain/memory"
)

// The defaults that replace Config's zero fields. The field documentation in
// config.go and the README quote these values, and the errors of Validate
// and FromEnv print them from here; change them all together.
const (
	defaultListen          = ":8080"
	defaultCheckInterval   = time.Second
	defaultConsecutive     = 1
	defaultSoftLimitRatio  = softlimit.DefaultRatio
	defaultReadyTimeout    = 30 * time.Second
	defaultDrainTimeout    = 30 * time.Second
	defaultKillGrace       = 5 * time.Second
	defaultMaxReplacements = 1
	defaultBackoffMin      = 100 * time.Millisecond
	defaultBackoffMax      = 30 * time.Second
	defaultStableAfter     = 30 * time.Second
	defaultCrashLimit      = 5
	defaultCrashWindow     = 60 * time.Second
	// HardMemory defaults to MaxMemory × 1.25 (hardMemoryDefault).
	// Workers defaults to runtime.GOMAXPROCS(0), which is not a constant.
	// Sampler defaults to memory.RSS and Logger to slog.Default().
)

// HeartbeatTimeout defaults to heartbeatChecks × CheckInterval, and to no
// less than minDefaultHeartbeat: a few missed check intervals make a hang,
// but with a short CheckInterval (tests use 50 ms) a worker in a pause of
// its collector or on a busy machine would miss them without being hung.
// minHeartbeatTimeout is the shortest that Validate takes: below it, a
// healthy worker on a loaded machine misses its heartbeat and is killed.
const (
	heartbeatChecks     = 5
	minDefaultHeartbeat = 2 * time.Second
	minHeartbeatTimeout = 100 * time.Millisecond
)

// Bounds that Validate enforces beyond the signs.
const (
	// maxWorkers is far beyond any machine's sensible process count; more
	// is a typo (an extra zero), not a plan.
	maxWorkers = 1024
	// minMemory is the smallest MaxMemory or TotalMemory: no Go server
	// runs in less, so a smaller value is a missing unit (as in
	// memory.ParseMemoryLimit).
	minMemory = 1 << 20
	// minDuration is the smallest non-zero duration. Anything shorter is
	// an untyped constant that lost its unit (ReadyTimeout: 30 is 30ns),
	// and would spin the supervisor or kill every worker at once.
	minDuration = envvar.MinDuration
)

// withDefaults returns c with every zero field replaced by its documented
// default. Non-zero fields are kept as they are, invalid ones included:
// Validate reports those. A negative SoftLimitRatio stays negative (off).
// withDefaults is idempotent.
func (c Config) withDefaults() Config {
	if len(c.Listen) == 0 && c.Launcher == nil {
		c.Listen = []string{defaultListen}
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Sampler == nil {
		c.Sampler = memory.RSS
	}
	if c.HardMemory == 0 {
		c.HardMemory = hardMemoryDefault(c.MaxMemory)
	}
	setDefault(&c.CheckInterval, defaultCheckInterval)
	setDefault(&c.Consecutive, defaultConsecutive)
	setDefault(&c.SoftLimitRatio, defaultSoftLimitRatio)
	setDefault(&c.ReadyTimeout, defaultReadyTimeout)
	setDefault(&c.DrainTimeout, defaultDrainTimeout)
	setDefault(&c.KillGrace, defaultKillGrace)
	setDefault(&c.HeartbeatTimeout, defaultHeartbeat(c.CheckInterval))
	setDefault(&c.MaxReplacements, defaultMaxReplacements)
	setDefault(&c.BackoffMin, defaultBackoffMin)
	setDefault(&c.BackoffMax, defaultBackoffMax)
	setDefault(&c.StableAfter, defaultStableAfter)
	setDefault(&c.CrashLimit, defaultCrashLimit)
	setDefault(&c.CrashWindow, defaultCrashWindow)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// defaultHeartbeat returns HeartbeatTimeout's default for a CheckInterval
// (already defaulted): heartbeatChecks intervals, at least
// minDefaultHeartbeat, without overflow.
func defaultHeartbeat(checkInterval time.Duration) time.Duration {
	if checkInterval > math.MaxInt64/heartbeatChecks {
		return math.MaxInt64
	}
	return max(heartbeatChecks*checkInterval, minDefaultHeartbeat)
}

// hardMemoryDefault returns HardMemory's default for maxMemory: a quarter
// above it, as far as a uint64 goes; 0 (none) without a limit.
func hardMemoryDefault(maxMemory uint64) uint64 {
	if maxMemory > math.MaxUint64-maxMemory/4 {
		return math.MaxUint64
	}
	return maxMemory + maxMemory/4
}

func setDefault[T int | float64 | time.Duration](p *T, def T) {
	if *p == 0 {
		*p = def
	}
}
