package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/envvar"
	"github.com/memdrain/memdrain/internal/softlimit"
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
	// Sampler defaults to drain.RSS and Logger to slog.Default().
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
	// drain.ParseMemoryLimit).
	minMemory = 1 << 20
	// minDuration is the smallest non-zero duration. Anything shorter is
	// an untyped constant that lost its unit (ReadyTimeout: 30 is 30ns),
	// and would spin the supervisor or kill every worker at once.
	minDuration = envvar.MinDuration
)

// unixPrefix marks a unix socket address in Config.Listen.
const unixPrefix = "unix:"

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
		c.Sampler = drain.RSS
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

// Validate reports every field of c that cannot be used. It checks c as
// given, where a zero field stands for its default: the zero Config is
// valid, and Validate is meant for the Config as the program built it,
// before any defaults are applied (the defaults themselves are valid too).
// The problems are joined with errors.Join, so that all of them can be
// fixed at once; each one names the field, its value and what is accepted:
//
//	cluster: Config.Workers is -2; accepted: a count from 1 to 1024, or 0 for the CPUs this process may use (2)
//
// Besides signs and ranges, Validate rejects values that can only be
// mistakes: a non-zero memory size under 1 MiB or duration under 1µs (a
// number that lost its unit), a jitter without the limit it varies, sums
// that overflow, a BackoffMin above BackoffMax, a TotalMemory budget below
// MaxMemory, a HardMemory below MaxMemory or without it, a listen address that is empty, has no port or no unix socket
// path, the same address twice, Listen together with Listeners (one would
// be ignored), a listener that cannot be shared with a worker process, and
// drain.GoRuntime as Sampler (it measures only the process that calls it,
// and the master measures its workers).
//
// It also rejects a HeartbeatTimeout under 100 ms, which would kill
// healthy workers on a busy machine.
//
// Validate does not check that the memory limits fit in the memory the
// process may use; New does that in the master.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, accepted string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster: Config.%s is %v; accepted: %s", field, value, fmt.Sprintf(accepted, args...)))
	}
	// d has the defaults, for the checks that relate two fields.
	d := c.withDefaults()

	seen := make(map[string]int, len(c.Listen))
	for i, addr := range c.Listen {
		field := fmt.Sprintf("Listen[%d]", i)
		if problem := checkAddr(addr); problem != "" {
			bad(field, strconv.Quote(addr), "%s (%s)", acceptedAddr, problem)
			continue
		}
		if j, dup := seen[addr]; dup {
			bad(field, strconv.Quote(addr), "addresses that differ from one another (Listen[%d] is the same)", j)
			continue
		}
		seen[addr] = i
	}

	for i, ln := range c.Listeners {
		if _, ok := ln.(syscall.Conn); !ok {
			bad(fmt.Sprintf("Listeners[%d]", i), fmt.Sprintf("a %T", ln),
				"*net.TCPListener or *net.UnixListener, which can be shared with worker processes "+
					"(for HTTPS, pass the plain listener and set TLSConfig on the http.Server given to Worker.Serve)")
		}
	}
	if n := max(len(c.Listen), len(c.Listeners)); n > maxListeners {
		bad("Listen", fmt.Sprintf("%d addresses", n), "at most %d listening sockets (in Listen or Listeners)", maxListeners)
	}
	if len(c.Listen) > 0 && len(c.Listeners) > 0 {
		// One of the two would be silently ignored.
		bad("Listen", fmt.Sprintf("%q", c.Listen), "no addresses when Listeners are given (they replace Listen)")
	}

	if c.Launcher != nil && (len(c.Listen) > 0 || len(c.Listeners) > 0) {
		bad("Listen", fmt.Sprintf("%q (with %d Listeners)", c.Listen, len(c.Listeners)),
			"no addresses and no Listeners when a Launcher starts the workers: its workers share no sockets")
	}

	if c.Workers < 0 || c.Workers > maxWorkers {
		bad("Workers", c.Workers, "%s", acceptedWorkers())
	}

	checkMemory := func(field string, v uint64, zero string) {
		if v == 0 || v >= minMemory {
			return
		}
		// v is bytes; what was meant was almost certainly v MiB.
		bad(field, fmt.Sprintf("%d (bytes)", v), "0 for %s, or at least 1MiB (%d); did you mean %d << 20 (%s)?",
			zero, minMemory, v, drain.FormatSize(v<<20))
	}
	checkMemory("MaxMemory", c.MaxMemory, "no limit")
	checkMemory("TotalMemory", c.TotalMemory, "no budget")
	switch {
	case c.HardMemory != 0 && c.MaxMemory == 0:
		bad("HardMemory", drain.FormatSize(c.HardMemory),
			"0 while MaxMemory is 0 (no limit): HardMemory is a ceiling above MaxMemory, for a worker whose replacement is not ready yet")
	case c.HardMemory != 0 && c.HardMemory < c.MaxMemory:
		bad("HardMemory", drain.FormatSize(c.HardMemory), "0 for the default (MaxMemory × 1.25, %s here), or at least MaxMemory (%s)",
			drain.FormatSize(hardMemoryDefault(c.MaxMemory)), drain.FormatSize(c.MaxMemory))
	}
	if c.TotalMemory >= minMemory && c.MaxMemory >= minMemory && c.TotalMemory < c.MaxMemory {
		bad("TotalMemory", drain.FormatSize(c.TotalMemory),
			"0 for no budget, or at least MaxMemory (%s): a budget below it is passed by a single worker before MaxMemory ever is",
			drain.FormatSize(c.MaxMemory))
	}
	if c.Sampler == drain.GoRuntime {
		bad("Sampler", "drain.GoRuntime",
			"drain.RSS, drain.USS, or a Sampler that measures another process: drain.GoRuntime measures only the process that calls it, and the master measures its workers")
	}

	count := func(field string, v int, zero string) {
		if v < 0 {
			bad(field, v, "a positive count, or 0 for %s", zero)
		}
	}
	duration := func(field string, v time.Duration, zero string) {
		switch {
		case v < 0:
			bad(field, v, "a positive duration, or 0 for %s", zero)
		case v > 0 && v < minDuration:
			bad(field, v, "0 for %s, or at least %v; did you mean %d * time.Second or %d * time.Millisecond?", zero, minDuration, int64(v), int64(v))
		}
	}
	duration("CheckInterval", c.CheckInterval, byDefault(defaultCheckInterval))
	if c.CheckInterval >= minDuration && c.CheckInterval < drain.MinCheckInterval {
		// Sampling every worker this often would cost more than it tells:
		// the Meter already samples a worker near its limit every 10 ms.
		bad("CheckInterval", c.CheckInterval, "0 for %s, or at least %v", byDefault(defaultCheckInterval), drain.MinCheckInterval)
	}
	count("Consecutive", c.Consecutive, byDefault(defaultConsecutive))
	if r := c.SoftLimitRatio; math.IsNaN(r) || r > 1 {
		bad("SoftLimitRatio", r, "a fraction in (0, 1], 0 for the default %v, or a negative number for no soft limit", defaultSoftLimitRatio)
	}

	count("MaxRequests", c.MaxRequests, "off")
	count("MaxRequestsJitter", c.MaxRequestsJitter, "none")
	switch {
	case c.MaxRequestsJitter > 0 && c.MaxRequests == 0:
		bad("MaxRequestsJitter", c.MaxRequestsJitter, "0 while MaxRequests is 0 (off): the jitter varies MaxRequests")
	case c.MaxRequests > 0 && c.MaxRequestsJitter > math.MaxInt-c.MaxRequests:
		bad("MaxRequestsJitter", c.MaxRequestsJitter, "at most %d, so that MaxRequests plus the jitter fits in an int", math.MaxInt-c.MaxRequests)
	}
	duration("MaxAge", c.MaxAge, "off")
	duration("MaxAgeJitter", c.MaxAgeJitter, "none")
	switch {
	case c.MaxAgeJitter > 0 && c.MaxAge == 0:
		bad("MaxAgeJitter", c.MaxAgeJitter, "0 while MaxAge is 0 (off): the jitter varies MaxAge")
	case c.MaxAge > 0 && c.MaxAgeJitter > math.MaxInt64-c.MaxAge:
		bad("MaxAgeJitter", c.MaxAgeJitter, "at most %v, so that MaxAge plus the jitter fits in a time.Duration", time.Duration(math.MaxInt64-c.MaxAge))
	}

	duration("ReadyTimeout", c.ReadyTimeout, byDefault(defaultReadyTimeout))
	duration("DrainTimeout", c.DrainTimeout, byDefault(defaultDrainTimeout))
	duration("KillGrace", c.KillGrace, byDefault(defaultKillGrace))
	if d.DrainTimeout > 0 && d.KillGrace > 0 && d.KillGrace > math.MaxInt64-d.DrainTimeout {
		// The master waits DrainTimeout+KillGrace; an overflow would be a
		// negative wait, and a SIGKILL the moment a drain starts. Blame
		// the field that was set.
		if c.KillGrace != 0 {
			bad("KillGrace", c.KillGrace, "at most %v, so that DrainTimeout (%v%s) plus KillGrace fits in a time.Duration",
				time.Duration(math.MaxInt64-d.DrainTimeout), d.DrainTimeout, defaultNote(c.DrainTimeout == 0))
		} else {
			bad("DrainTimeout", c.DrainTimeout, "at most %v, so that DrainTimeout plus KillGrace (%v, the default) fits in a time.Duration",
				time.Duration(math.MaxInt64-d.KillGrace), d.KillGrace)
		}
	}
	duration("HeartbeatTimeout", c.HeartbeatTimeout, heartbeatDefault)
	if c.HeartbeatTimeout >= minDuration && c.HeartbeatTimeout < minHeartbeatTimeout {
		bad("HeartbeatTimeout", c.HeartbeatTimeout, "0 for %s, or at least %v: a shorter timeout kills healthy workers on a busy machine",
			heartbeatDefault, minHeartbeatTimeout)
	}
	count("MaxReplacements", c.MaxReplacements, byDefault(defaultMaxReplacements))

	duration("BackoffMin", c.BackoffMin, byDefault(defaultBackoffMin))
	duration("BackoffMax", c.BackoffMax, byDefault(defaultBackoffMax))
	if d.BackoffMin > 0 && d.BackoffMax > 0 && d.BackoffMin > d.BackoffMax {
		// Blame the field that was set: with only BackoffMax set below the
		// default BackoffMin, BackoffMax is the one to change.
		if c.BackoffMin != 0 {
			bad("BackoffMin", c.BackoffMin, "at most BackoffMax (%v%s)", d.BackoffMax, defaultNote(c.BackoffMax == 0))
		} else {
			bad("BackoffMax", c.BackoffMax, "at least BackoffMin (%v, the default)", d.BackoffMin)
		}
	}
	duration("StableAfter", c.StableAfter, byDefault(defaultStableAfter))
	count("CrashLimit", c.CrashLimit, byDefault(defaultCrashLimit))
	duration("CrashWindow", c.CrashWindow, byDefault(defaultCrashWindow))

	return errors.Join(errs...)
}

// byDefault says, in errors, what zero means for a field with a default.
func byDefault(def any) string { return fmt.Sprintf("the default %v", def) }

// heartbeatDefault says, in errors, what a zero HeartbeatTimeout means.
var heartbeatDefault = fmt.Sprintf("the default %d × CheckInterval, at least %v", heartbeatChecks, minDefaultHeartbeat)

// defaultNote marks a value in an error as the default the user did not set.
func defaultNote(isDefault bool) string {
	if isDefault {
		return ", the default"
	}
	return ""
}

// acceptedAddr describes a listen address, for errors.
const acceptedAddr = `"host:port" for TCP (":8080" for every interface) or "unix:/path" for a unix socket`

// acceptedWorkers describes Workers' range, with the number of CPUs this
// process may use, which the operator may not know.
func acceptedWorkers() string {
	return fmt.Sprintf("a count from 1 to %d, or 0 for the CPUs this process may use (%d)", maxWorkers, runtime.GOMAXPROCS(0))
}

// checkAddr returns what is wrong with a listen address, or "" if nothing
// is.
func checkAddr(addr string) string {
	if strings.TrimSpace(addr) == "" {
		return "empty"
	}
	if strings.TrimSpace(addr) != addr {
		return "white space around the address"
	}
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		if path == "" {
			return "no socket path after \"unix:\""
		}
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		if _, numErr := strconv.ParseUint(addr, 10, 16); numErr == nil {
			return fmt.Sprintf("a port alone; did you mean %q?", ":"+addr)
		}
		if strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "./") {
			return fmt.Sprintf("a path; did you mean %q?", unixPrefix+addr)
		}
		return "no port"
	}
	return ""
}

// checkMemoryFits reports an error if the workers may together need more
// memory than available, the bytes this process may use according to
// source (both as returned by drain.AvailableMemory). c may be given with
// or without its defaults.
//
// During a hand-over a replacement runs beside the worker it replaces, so
// with MaxMemory set the fleet may reach (Workers + MaxReplacements) ×
// MaxMemory. A TotalMemory budget, which counts every process, replacements
// included, caps that sum when it is lower: it is what lets a few workers
// grow large while the fleet stays small. Without MaxMemory, the budget
// alone must fit. Without either there is nothing to check.
func (c Config) checkMemoryFits(available uint64, source string) error {
	d := c.withDefaults()
	if d.MaxMemory == 0 && d.TotalMemory == 0 {
		return nil
	}
	// More replacements than workers never run at once.
	replacements := uint64(max(min(d.MaxReplacements, d.Workers), 0))
	procs := uint64(max(d.Workers, 0)) + replacements
	var perWorker uint64
	saturated := false
	if d.MaxMemory > 0 {
		hi, lo := bits.Mul64(procs, d.MaxMemory)
		perWorker, saturated = lo, hi != 0
	}

	if d.TotalMemory > 0 && (d.MaxMemory == 0 || saturated || d.TotalMemory < perWorker) {
		if d.TotalMemory <= available {
			return nil
		}
		need, avail := formatPair(d.TotalMemory, available)
		return fmt.Errorf("cluster: TotalMemory %s is more than the %s this process may use (%s); lower TotalMemory",
			need, avail, source)
	}
	if !saturated && perWorker <= available {
		return nil
	}
	need, avail := formatPair(perWorker, available)
	total := "= " + need
	if saturated {
		total, avail = "overflows 64 bits", drain.FormatSize(available)
	}
	plural := func(n uint64, word string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, word)
		}
		return fmt.Sprintf("%d %ss", n, word)
	}
	lower := "MaxMemory or Workers"
	if replacements > 1 {
		lower = "MaxMemory, Workers or MaxReplacements"
	}
	return fmt.Errorf("cluster: %s + %s × MaxMemory %s %s, more than the %s this process may use (%s); lower %s, or set a TotalMemory budget that fits",
		plural(uint64(max(d.Workers, 0)), "worker"), plural(replacements, "replacement"), drain.FormatSize(d.MaxMemory),
		total, avail, source, lower)
}

// formatPair formats two sizes for a message that says need is more than
// available, adding the exact bytes when rounding would print them alike
// ("16GiB, more than the 16GiB").
func formatPair(need, available uint64) (string, string) {
	n, a := drain.FormatSize(need), drain.FormatSize(available)
	if n == a {
		return fmt.Sprintf("%s (%d bytes)", n, need), fmt.Sprintf("%s (%d bytes)", a, available)
	}
	return n, a
}
