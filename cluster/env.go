package cluster

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/envvar"
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
	return envvar.Read("cluster", base, envVars, lookup)
}

// An envVar is one environment variable that FromEnv reads.
type envVar = envvar.Var[Config]

// envVars lists every variable FromEnv reads, in the order of Config's
// fields; a test checks it against Config, so the two cannot drift apart.
var envVars = []envVar{
	{
		Name:     "MEMDRAIN_LISTEN",
		Field:    "Listen",
		Accepted: "comma-separated addresses, each " + acceptedAddr,
		Example:  "127.0.0.1:8080, unix:/run/app.sock",
		Set:      setListen,
	},
	workersVar("MEMDRAIN_WORKERS", ""),
	workersVar("CPU_COUNT", "MEMDRAIN_WORKERS"),
	memoryVar("MEMDRAIN_MAX_MEMORY", "MaxMemory", func(c *Config) *uint64 { return &c.MaxMemory }, "no limit"),
	memoryVar("MEMDRAIN_HARD_MEMORY", "HardMemory", func(c *Config) *uint64 { return &c.HardMemory }, "the default, MaxMemory × 1.25"),
	memoryVar("MEMDRAIN_TOTAL_MEMORY", "TotalMemory", func(c *Config) *uint64 { return &c.TotalMemory }, "no budget"),
	{
		Name:     "MEMDRAIN_SAMPLER",
		Field:    "Sampler",
		Accepted: "rss (resident set size) or uss (resident memory not shared with other processes)",
		Example:  "uss",
		Set:      setSampler,
	},
	durationVar("MEMDRAIN_CHECK_INTERVAL", "CheckInterval", func(c *Config) *time.Duration { return &c.CheckInterval },
		"ms", byDefault(defaultCheckInterval)),
	{
		Name:     "CHECK_INTERVAL",
		Field:    "CheckInterval",
		YieldsTo: "MEMDRAIN_CHECK_INTERVAL",
		Accepted: fmt.Sprintf("a whole number of milliseconds (Node's convention) or a Go duration such as %q, ≥ 0 (0 = %s)",
			"250ms", byDefault(defaultCheckInterval)),
		Example: "250",
		Set:     setCheckIntervalMillis,
	},
	countVar("MEMDRAIN_CONSECUTIVE", "Consecutive", func(c *Config) *int { return &c.Consecutive }, byDefault(defaultConsecutive)),
	{
		Name:  "MEMDRAIN_SOFT_LIMIT",
		Field: "SoftLimitRatio",
		Accepted: fmt.Sprintf("a fraction of MEMDRAIN_MAX_MEMORY in (0, 1] such as %q, or %q for no soft limit (unset = %s)",
			"0.8", "off", byDefault(defaultSoftLimitRatio)),
		Example: "0.75",
		Set:     setSoftLimit,
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
		Name:     name,
		Field:    "Workers",
		YieldsTo: yieldsTo,
		Accepted: fmt.Sprintf("a whole number from 0 to %d (0 = one per CPU this process may use, %d here)", maxWorkers, runtime.GOMAXPROCS(0)),
		Example:  "3",
		Set: func(c *Config, v string) (string, bool) {
			n, problem, ok := envvar.Count(v)
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
		Name:     name,
		Field:    field,
		Accepted: fmt.Sprintf("a whole number ≥ 0 (0 = %s)", zero),
		Example:  "7",
		Set: func(c *Config, v string) (string, bool) {
			n, problem, ok := envvar.Count(v)
			if ok {
				*dst(c) = n
			}
			return problem, ok
		},
	}
}

func memoryVar(name, field string, dst func(*Config) *uint64, zero string) envVar {
	return envVar{
		Name:  name,
		Field: field,
		Accepted: fmt.Sprintf("a size such as %q, %q or %q, at least 1Mi, or 0 for %s",
			"400Mi", "1.5Gi", "512MB", zero),
		Example: "1.5Gi",
		Set: func(c *Config, v string) (string, bool) {
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
		Name:     name,
		Field:    field,
		Accepted: fmt.Sprintf("a Go duration such as %q or %q, ≥ 0 (0 = %s)", "30s", "250ms", zero),
		Example:  "1m30s",
		Set: func(c *Config, v string) (string, bool) {
			d, problem, ok := envvar.Duration(v, hintUnit)
			if ok {
				*dst(c) = d
			}
			return problem, ok
		},
	}
}

func setCheckIntervalMillis(c *Config, v string) (string, bool) {
	d, problem, ok := envvar.Millis(v)
	if ok {
		c.CheckInterval = d
	}
	return problem, ok
}

func setSoftLimit(c *Config, v string) (string, bool) {
	r, problem, ok := envvar.SoftLimit(v)
	if ok {
		c.SoftLimitRatio = r
	}
	return problem, ok
}
