package cluster

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/memdrain/memdrain/internal/envvar"
	"github.com/memdrain/memdrain/memory"
)

// FromEnv returns base with each field overridden by its environment
// variable (named beside each field of Config) when that variable is set
// and not empty. Values may have white space around them. Where memdrain's
// variable and Node's name for the same setting are both set
// (MEMDRAIN_WORKERS and CPU_COUNT, MEMDRAIN_CHECK_INTERVAL and
// CHECK_INTERVAL), memdrain's wins and Node's is not read.
//
// Sizes are written as memory.ParseMemoryLimit reads them ("400Mi", "1.5Gi",
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
	{
		Name:     "MEMDRAIN_CONTROL",
		Field:    "Control",
		Accepted: "the path of a unix socket",
		Example:  "/run/user/1000/memdrain.sock",
		Set: func(c *Config, v string) (string, bool) {
			if problem := checkControl(v); problem != "" {
				return problem, false
			}
			c.Control = v
			return "", true
		},
	},
	workersVar("MEMDRAIN_WORKERS", ""),
	workersVar("CPU_COUNT", "MEMDRAIN_WORKERS"),
	envvar.SizeVar("MEMDRAIN_MAX_MEMORY", "MaxMemory", func(c *Config) *uint64 { return &c.MaxMemory }, "no limit", memory.ParseMemoryLimit),
	envvar.SizeVar("MEMDRAIN_HARD_MEMORY", "HardMemory", func(c *Config) *uint64 { return &c.HardMemory }, "the default, MaxMemory × 1.25", memory.ParseMemoryLimit),
	envvar.SizeVar("MEMDRAIN_TOTAL_MEMORY", "TotalMemory", func(c *Config) *uint64 { return &c.TotalMemory }, "no budget", memory.ParseMemoryLimit),
	{
		Name:     "MEMDRAIN_SAMPLER",
		Field:    "Sampler",
		Accepted: "rss (resident set size) or anon (resident anonymous memory: heap and stacks, not shared code)",
		Example:  "anon",
		Set:      setSampler,
	},
	envvar.DurationVar("MEMDRAIN_CHECK_INTERVAL", "CheckInterval", func(c *Config) *time.Duration { return &c.CheckInterval },
		"ms", byDefault(defaultCheckInterval)),
	envvar.MillisVar("CHECK_INTERVAL", "MEMDRAIN_CHECK_INTERVAL", "CheckInterval", func(c *Config) *time.Duration { return &c.CheckInterval },
		byDefault(defaultCheckInterval)),
	envvar.CountVar("MEMDRAIN_CONSECUTIVE", "Consecutive", func(c *Config) *int { return &c.Consecutive }, byDefault(defaultConsecutive)),
	envvar.SoftLimitVar("MEMDRAIN_SOFT_LIMIT", "SoftLimitRatio", func(c *Config) *float64 { return &c.SoftLimitRatio },
		byDefault(defaultSoftLimitRatio)),
	envvar.CountVar("MEMDRAIN_MAX_REQUESTS", "MaxRequests", func(c *Config) *int { return &c.MaxRequests }, "off"),
	envvar.CountVar("MEMDRAIN_MAX_REQUESTS_JITTER", "MaxRequestsJitter", func(c *Config) *int { return &c.MaxRequestsJitter }, "none"),
	envvar.DurationVar("MEMDRAIN_MAX_AGE", "MaxAge", func(c *Config) *time.Duration { return &c.MaxAge }, "s", "off"),
	envvar.DurationVar("MEMDRAIN_MAX_AGE_JITTER", "MaxAgeJitter", func(c *Config) *time.Duration { return &c.MaxAgeJitter }, "s", "none"),
	envvar.DurationVar("MEMDRAIN_READY_TIMEOUT", "ReadyTimeout", func(c *Config) *time.Duration { return &c.ReadyTimeout },
		"s", byDefault(defaultReadyTimeout)),
	envvar.DurationVar("MEMDRAIN_DRAIN_TIMEOUT", "DrainTimeout", func(c *Config) *time.Duration { return &c.DrainTimeout },
		"s", byDefault(defaultDrainTimeout)),
	envvar.DurationVar("MEMDRAIN_KILL_GRACE", "KillGrace", func(c *Config) *time.Duration { return &c.KillGrace },
		"s", byDefault(defaultKillGrace)),
	envvar.DurationVar("MEMDRAIN_HEARTBEAT_TIMEOUT", "HeartbeatTimeout", func(c *Config) *time.Duration { return &c.HeartbeatTimeout },
		"s", heartbeatDefault),
	envvar.CountVar("MEMDRAIN_MAX_REPLACEMENTS", "MaxReplacements", func(c *Config) *int { return &c.MaxReplacements },
		byDefault(defaultMaxReplacements)),
	envvar.DurationVar("MEMDRAIN_BACKOFF_MIN", "BackoffMin", func(c *Config) *time.Duration { return &c.BackoffMin },
		"ms", byDefault(defaultBackoffMin)),
	envvar.DurationVar("MEMDRAIN_BACKOFF_MAX", "BackoffMax", func(c *Config) *time.Duration { return &c.BackoffMax },
		"s", byDefault(defaultBackoffMax)),
	envvar.DurationVar("MEMDRAIN_STABLE_AFTER", "StableAfter", func(c *Config) *time.Duration { return &c.StableAfter },
		"s", byDefault(defaultStableAfter)),
	envvar.CountVar("MEMDRAIN_CRASH_LIMIT", "CrashLimit", func(c *Config) *int { return &c.CrashLimit }, byDefault(defaultCrashLimit)),
	envvar.DurationVar("MEMDRAIN_CRASH_WINDOW", "CrashWindow", func(c *Config) *time.Duration { return &c.CrashWindow },
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

func setSampler(c *Config, v string) (string, bool) {
	if strings.EqualFold(v, "go") {
		return `the "go" sampler measures only the process that calls it, and the master measures its workers`, false
	}
	s, err := memory.SamplerByName(v)
	if err != nil {
		return "unknown sampler", false
	}
	c.Sampler = s
	return "", true
}
