package cluster

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// FromEnv returns base with each field overridden by its environment
// variable (named beside each field of Config) when that variable is set
// and not empty. Values may have white space around them. Where memdrain's
// variable and Node's name for the same setting are both set
// (MEMDRAIN_WORKERS and CPU_COUNT, MEMDRAIN_CHECK_INTERVAL and
// CHECK_INTERVAL), memdrain's wins and Node's is not read.
//
// Sizes are written as drain.ParseMemoryLimit reads them ("400Mi", "1.5Gi",
// "512MB"; "0" for none). Durations are Go durations ("1s", "250ms"); a
// number without a unit is rejected, since it could mean any unit, except
// in CHECK_INTERVAL, which is milliseconds by Node's convention.
// MEMDRAIN_SOFT_LIMIT is a fraction in (0, 1] or "off".
//
// FromEnv checks each value on its own; relations between fields are left
// to Validate. It reports every variable it cannot use, joined with
// errors.Join, each naming the variable, quoting its value and saying what
// is accepted:
//
//	cluster: MEMDRAIN_WORKERS="two": accepted: a whole number from 0 to 1024 (0 = one per CPU this process may use, 2 here)
//
// On an error FromEnv returns base unchanged.
func FromEnv(base Config) (Config, error) {
	return fromEnv(base, os.LookupEnv)
}

// fromEnv is FromEnv reading its variables through lookup, so that tests
// need not change the process's environment.
func fromEnv(base Config, lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	c := base
	var errs []error
	for _, e := range envVars {
		v, ok := get(e.name)
		if !ok {
			continue
		}
		if e.yieldsTo != "" {
			if _, primary := get(e.yieldsTo); primary {
				continue
			}
		}
		if problem, ok := e.set(&c, v); !ok {
			errs = append(errs, e.error(v, problem))
		}
	}
	if len(errs) > 0 {
		return base, errors.Join(errs...)
	}
	return c, nil
}

// An envVar is one environment variable that FromEnv reads.
type envVar struct {
	name  string // the variable
	field string // the Config field it sets
	// yieldsTo is the variable that wins when both are set: Node's names
	// yield to memdrain's own. Empty for memdrain's.
	yieldsTo string
	accepted string // what a value may be, for errors
	example  string // a valid value that sets field to a non-zero value
	// set parses v (trimmed, not empty) into c's field. If v cannot be
	// used it reports false, with what is wrong with v beyond not being
	// accepted ("negative", a hint), or "".
	set func(c *Config, v string) (problem string, ok bool)
}

// error returns the error FromEnv reports for the value v of e.
func (e envVar) error(v, problem string) error {
	switch {
	case problem == "":
		return fmt.Errorf("cluster: %s=%q: accepted: %s", e.name, v, e.accepted)
	case strings.Contains(problem, "accepted:"):
		// drain's parsers already list what they accept, more precisely.
		return fmt.Errorf("cluster: %s=%q: %s", e.name, v, problem)
	default:
		return fmt.Errorf("cluster: %s=%q: %s; accepted: %s", e.name, v, problem, e.accepted)
	}
}

// envVars lists every variable FromEnv reads, in the order of Config's
// fields; a test checks it against Config, so the two cannot drift apart.
var envVars = []envVar{
	{
		name:     "MEMDRAIN_LISTEN",
		field:    "Listen",
		accepted: "comma-separated addresses, each " + acceptedAddr,
		example:  "127.0.0.1:8080, unix:/run/app.sock",
		set:      setListen,
	},
	workersVar("MEMDRAIN_WORKERS", ""),
	workersVar("CPU_COUNT", "MEMDRAIN_WORKERS"),
	memoryVar("MEMDRAIN_MAX_MEMORY", "MaxMemory", func(c *Config) *uint64 { return &c.MaxMemory }, "no limit"),
	memoryVar("MEMDRAIN_HARD_MEMORY", "HardMemory", func(c *Config) *uint64 { return &c.HardMemory }, "the default, MaxMemory × 1.25"),
	memoryVar("MEMDRAIN_TOTAL_MEMORY", "TotalMemory", func(c *Config) *uint64 { return &c.TotalMemory }, "no budget"),
	{
		name:     "MEMDRAIN_SAMPLER",
		field:    "Sampler",
		accepted: "rss (resident set size) or uss (resident memory not shared with other processes)",
		example:  "uss",
		set:      setSampler,
	},
	durationVar("MEMDRAIN_CHECK_INTERVAL", "CheckInterval", func(c *Config) *time.Duration { return &c.CheckInterval },
		"ms", byDefault(defaultCheckInterval)),
	{
		name:     "CHECK_INTERVAL",
		field:    "CheckInterval",
		yieldsTo: "MEMDRAIN_CHECK_INTERVAL",
		accepted: fmt.Sprintf("a whole number of milliseconds (Node's convention) or a Go duration such as %q, ≥ 0 (0 = %s)",
			"250ms", byDefault(defaultCheckInterval)),
		example: "250",
		set:     setCheckIntervalMillis,
	},
	countVar("MEMDRAIN_CONSECUTIVE", "Consecutive", func(c *Config) *int { return &c.Consecutive }, byDefault(defaultConsecutive)),
	{
		name:  "MEMDRAIN_SOFT_LIMIT",
		field: "SoftLimitRatio",
		accepted: fmt.Sprintf("a fraction of MaxMemory in (0, 1] such as %q, or %q for no soft limit (unset = %s)",
			"0.8", "off", byDefault(defaultSoftLimitRatio)),
		example: "0.75",
		set:     setSoftLimit,
	},
	countVar("MEMDRAIN_MAX_REQUESTS", "MaxRequests", func(c *Config) *int { return &c.MaxRequests }, "off"),
	countVar("MEMDRAIN_MAX_REQUESTS_JITTER", "MaxRequestsJitter", func(c *Config) *int { return &c.MaxRequestsJitter }, "none"),
	durationVar("MEMDRAIN_MAX_AGE", "MaxAge", func(c *Config) *time.Duration { return &c.MaxAge }, "s", "off"),
	durationVar("MEMDRAIN_MAX_AGE_JITTER", "MaxAgeJitter", func(c *Config) *time.Duration { return &c.MaxAgeJitter }, "s", "none"),
	durationVar("MEMDRAIN_READY_TIMEOUT", "ReadyTimeout", func(c *Config) *time.Duration { return &c.ReadyTimeout },
		"s", byDefault(defaultReadyTimeout)),
	durationVar("MEMDRAIN_DRAIN_TIMEOUT", "DrainTimeout", func(c *Config) *time.Duration { return &c.DrainTimeout },
		"s", byDefault(defaultDrainTimeout)),
	durationVar("MEMDRAIN_KILL_GRACE", "KillGrace", func(c *Config) *time.Duration { return &c.KillGrace },
		"s", byDefault(defaultKillGrace)),
	durationVar("MEMDRAIN_HEARTBEAT_TIMEOUT", "HeartbeatTimeout", func(c *Config) *time.Duration { return &c.HeartbeatTimeout },
		"s", heartbeatDefault),
	countVar("MEMDRAIN_MAX_REPLACEMENTS", "MaxReplacements", func(c *Config) *int { return &c.MaxReplacements },
		byDefault(defaultMaxReplacements)),
	durationVar("MEMDRAIN_BACKOFF_MIN", "BackoffMin", func(c *Config) *time.Duration { return &c.BackoffMin },
		"ms", byDefault(defaultBackoffMin)),
	durationVar("MEMDRAIN_BACKOFF_MAX", "BackoffMax", func(c *Config) *time.Duration { return &c.BackoffMax },
		"s", byDefault(defaultBackoffMax)),
	durationVar("MEMDRAIN_STABLE_AFTER", "StableAfter", func(c *Config) *time.Duration { return &c.StableAfter },
		"s", byDefault(defaultStableAfter)),
	countVar("MEMDRAIN_CRASH_LIMIT", "CrashLimit", func(c *Config) *int { return &c.CrashLimit }, byDefault(defaultCrashLimit)),
	durationVar("MEMDRAIN_CRASH_WINDOW", "CrashWindow", func(c *Config) *time.Duration { return &c.CrashWindow },
		"s", byDefault(defaultCrashWindow)),
}

func setListen(c *Config, v string) (string, bool) {
	parts := strings.Split(v, ",")
	addrs := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if problem := checkAddr(p); problem != "" {
			return fmt.Sprintf("address %d (%q): %s", i+1, p, problem), false
		}
		addrs = append(addrs, p)
	}
	c.Listen = addrs
	return "", true
}

func workersVar(name, yieldsTo string) envVar {
	return envVar{
		name:     name,
		field:    "Workers",
		yieldsTo: yieldsTo,
		accepted: fmt.Sprintf("a whole number from 0 to %d (0 = one per CPU this process may use, %d here)", maxWorkers, runtime.GOMAXPROCS(0)),
		example:  "3",
		set: func(c *Config, v string) (string, bool) {
			n, problem, ok := parseCount(v)
			if ok && n > maxWorkers {
				return fmt.Sprintf("more than %d", maxWorkers), false
			}
			if ok {
				c.Workers = n
			}
			return problem, ok
		},
	}
}

func countVar(name, field string, dst func(*Config) *int, zero string) envVar {
	return envVar{
		name:     name,
		field:    field,
		accepted: fmt.Sprintf("a whole number ≥ 0 (0 = %s)", zero),
		example:  "7",
		set: func(c *Config, v string) (string, bool) {
			n, problem, ok := parseCount(v)
			if ok {
				*dst(c) = n
			}
			return problem, ok
		},
	}
}

// parseCount parses a whole number ≥ 0.
func parseCount(v string) (int, string, bool) {
	n, err := strconv.Atoi(v)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, "out of range", false
	case err != nil:
		return 0, "", false
	case n < 0:
		return 0, "negative", false
	}
	return n, "", true
}

func memoryVar(name, field string, dst func(*Config) *uint64, zero string) envVar {
	return envVar{
		name:  name,
		field: field,
		accepted: fmt.Sprintf("a size such as %q, %q or %q, at least 1Mi, or 0 for %s",
			"400Mi", "1.5Gi", "512MB", zero),
		example: "1.5Gi",
		set: func(c *Config, v string) (string, bool) {
			n, err := drain.ParseMemoryLimit(v)
			if err != nil {
				return err.Error(), false
			}
			*dst(c) = n
			return "", true
		},
	}
}

func setSampler(c *Config, v string) (string, bool) {
	if strings.EqualFold(v, "go") {
		return `the "go" sampler measures only the process that calls it, and the master measures its workers`, false
	}
	s, err := drain.SamplerByName(v)
	if err != nil {
		return "unknown sampler", false
	}
	c.Sampler = s
	return "", true
}

func durationVar(name, field string, dst func(*Config) *time.Duration, hintUnit, zero string) envVar {
	return envVar{
		name:     name,
		field:    field,
		accepted: fmt.Sprintf("a Go duration such as %q or %q, ≥ 0 (0 = %s)", "30s", "250ms", zero),
		example:  "1m30s",
		set: func(c *Config, v string) (string, bool) {
			d, problem, ok := parseDuration(v, hintUnit)
			if ok {
				*dst(c) = d
			}
			return problem, ok
		},
	}
}

// parseDuration parses a Go duration ≥ 0. A bare number other than 0 is
// refused with a hint in hintUnit, the unit the setting is usually given
// in: "250" could be seconds or milliseconds, and guessing wrong is off by
// a factor of a thousand.
func parseDuration(v, hintUnit string) (time.Duration, string, bool) {
	d, err := time.ParseDuration(v)
	switch {
	case err == nil:
	case isPlainNumber(v) && strings.HasPrefix(v, "-"):
		return 0, "negative", false
	case isPlainNumber(v):
		return 0, fmt.Sprintf("a number without a unit; did you mean %q?", strings.TrimPrefix(v, "+")+hintUnit), false
	case durationOverflows(v):
		return 0, "out of range", false
	default:
		return 0, "", false
	}
	if d < 0 {
		return 0, "negative", false
	}
	if d > 0 && d < minDuration {
		return 0, fmt.Sprintf("shorter than %v", minDuration), false
	}
	return d, "", true
}

// isPlainNumber reports whether v is a decimal number with no unit, such
// as "250", "-1" or "1.5".
func isPlainNumber(v string) bool {
	v = strings.TrimLeft(v, "+-")
	digits, dots := 0, 0
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// durationOverflows reports whether v, which time.ParseDuration refused, is
// a well-formed duration whose numbers are too large: time.ParseDuration
// says "invalid duration" for both. It is, if v parses with each of its
// numbers replaced by 1.
func durationOverflows(v string) bool {
	var b strings.Builder
	inNumber, digits, dots := false, 0, 0
	for _, r := range v {
		if r >= '0' && r <= '9' || r == '.' {
			if !inNumber {
				b.WriteByte('1')
				inNumber, digits, dots = true, 0, 0
			}
			if r == '.' {
				dots++
			} else {
				digits++
			}
			if dots > 1 {
				return false
			}
			continue
		}
		if inNumber && digits == 0 {
			return false
		}
		inNumber = false
		b.WriteRune(r)
	}
	if inNumber && digits == 0 {
		return false
	}
	_, err := time.ParseDuration(b.String())
	return err == nil
}

// setCheckIntervalMillis reads Node's CHECK_INTERVAL: a whole number is
// milliseconds; a Go duration, which cannot be mistaken, is taken too.
func setCheckIntervalMillis(c *Config, v string) (string, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return "out of range", false
		}
		d, problem, ok := parseDuration(v, "ms")
		if ok {
			c.CheckInterval = d
		}
		return problem, ok
	}
	switch {
	case n < 0:
		return "negative", false
	case n > math.MaxInt64/int64(time.Millisecond):
		return "out of range", false
	}
	c.CheckInterval = time.Duration(n) * time.Millisecond
	return "", true
}

func setSoftLimit(c *Config, v string) (string, bool) {
	if strings.EqualFold(v, "off") {
		// Any negative ratio means off; -1 reads as "off" in a dump.
		c.SoftLimitRatio = -1
		return "", true
	}
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		if r, err := strconv.ParseFloat(strings.TrimSpace(pct), 64); err == nil && r > 0 && r <= 100 {
			return fmt.Sprintf("a percentage; did you mean %q?", strconv.FormatFloat(r/100, 'f', -1, 64)), false
		}
		return "", false
	}
	r, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil || math.IsNaN(r):
		return "", false
	case r == 0:
		return `0 is not a fraction in (0, 1]; did you mean "off"?`, false
	case r < 0:
		return `negative; did you mean "off"?`, false
	case r > 1 && r <= 100:
		return fmt.Sprintf("more than 1; did you mean %q?", strconv.FormatFloat(r/100, 'f', -1, 64)), false
	case r > 1:
		return "more than 1", false
	}
	c.SoftLimitRatio = r
	return "", true
}
