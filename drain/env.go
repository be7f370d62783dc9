package drain

import (
	"fmt"
	"os"

	"github.com/memdrain/memdrain/internal/envvar"
)

// OptionsFromEnv returns base with each setting a single process shares
// with a cluster overridden by the same MEMDRAIN_* variable that
// cluster.FromEnv reads, when that variable is set and not empty:
//
//	MEMDRAIN_MAX_MEMORY      Watch.Limit     a size ("400Mi", "1.5Gi", "512MB"; "0" for none)
//	MEMDRAIN_SAMPLER         Watch.Sampler   rss, uss or go
//	MEMDRAIN_CHECK_INTERVAL  Watch.Interval  a Go duration ("250ms")
//	CHECK_INTERVAL           Watch.Interval  milliseconds (Node's name; MEMDRAIN_CHECK_INTERVAL wins)
//	MEMDRAIN_CONSECUTIVE     Watch.Consecutive
//	MEMDRAIN_SOFT_LIMIT      SoftLimitRatio  a fraction in (0, 1], or "off"
//
// The values are read, and refused, exactly as cluster.FromEnv reads them,
// with the same errors (starting "drain:"), all of them joined with
// errors.Join; on an error OptionsFromEnv returns base unchanged. Unlike
// the cluster's master, one process may use the "go" sampler, which
// measures the process that calls it.
//
// The drain timeout, MEMDRAIN_DRAIN_TIMEOUT, belongs to the Controller,
// which the program builds before ListenAndServe: ConfigFromEnv reads it.
func OptionsFromEnv(base Options) (Options, error) {
	return envvar.Read("drain", base, optionsVars, os.LookupEnv)
}

// ConfigFromEnv returns base with Timeout overridden by
// MEMDRAIN_DRAIN_TIMEOUT (a Go duration such as "25s"; "0" for
// DefaultTimeout), the variable cluster.FromEnv reads into DrainTimeout,
// with the same errors. On an error it returns base unchanged.
func ConfigFromEnv(base Config) (Config, error) {
	return envvar.Read("drain", base, configVars, os.LookupEnv)
}

var configVars = []envvar.Var[Config]{{
	Name:     "MEMDRAIN_DRAIN_TIMEOUT",
	Field:    "Timeout",
	Accepted: fmt.Sprintf("a Go duration such as %q or %q, ≥ 0 (0 = the default %v)", "30s", "250ms", DefaultTimeout),
	Example:  "25s",
	Set: func(c *Config, v string) (string, bool) {
		d, problem, ok := envvar.Duration(v, "s")
		if ok {
			c.Timeout = d
		}
		return problem, ok
	},
}}

var optionsVars = []envvar.Var[Options]{
	{
		Name:     "MEMDRAIN_MAX_MEMORY",
		Field:    "Watch.Limit",
		Accepted: fmt.Sprintf("a size such as %q, %q or %q, at least 1Mi, or 0 for no limit", "400Mi", "1.5Gi", "512MB"),
		Example:  "1.5Gi",
		Set: func(o *Options, v string) (string, bool) {
			n, err := ParseMemoryLimit(v)
			if err != nil {
				return err.Error(), false
			}
			o.Watch.Limit = n
			return "", true
		},
	},
	{
		Name:     "MEMDRAIN_SAMPLER",
		Field:    "Watch.Sampler",
		Accepted: "rss (resident set size), uss (resident memory not shared with other processes) or go (the Go runtime's own figure)",
		Example:  "uss",
		Set: func(o *Options, v string) (string, bool) {
			s, err := SamplerByName(v)
			if err != nil {
				return "unknown sampler", false
			}
			o.Watch.Sampler = s
			return "", true
		},
	},
	{
		Name:     "MEMDRAIN_CHECK_INTERVAL",
		Field:    "Watch.Interval",
		Accepted: fmt.Sprintf("a Go duration such as %q or %q, ≥ 0 (0 = the default 1s)", "30s", "250ms"),
		Example:  "250ms",
		Set: func(o *Options, v string) (string, bool) {
			d, problem, ok := envvar.Duration(v, "ms")
			if ok {
				o.Watch.Interval = d
			}
			return problem, ok
		},
	},
	{
		Name:     "CHECK_INTERVAL",
		Field:    "Watch.Interval",
		YieldsTo: "MEMDRAIN_CHECK_INTERVAL",
		Accepted: fmt.Sprintf("a whole number of milliseconds (Node's convention) or a Go duration such as %q, ≥ 0 (0 = the default 1s)", "250ms"),
		Example:  "250",
		Set: func(o *Options, v string) (string, bool) {
			d, problem, ok := envvar.Millis(v)
			if ok {
				o.Watch.Interval = d
			}
			return problem, ok
		},
	},
	{
		Name:     "MEMDRAIN_CONSECUTIVE",
		Field:    "Watch.Consecutive",
		Accepted: "a whole number ≥ 0 (0 = the default 1)",
		Example:  "2",
		Set: func(o *Options, v string) (string, bool) {
			n, problem, ok := envvar.Count(v)
			if ok {
				o.Watch.Consecutive = n
			}
			return problem, ok
		},
	},
	{
		Name:     "MEMDRAIN_SOFT_LIMIT",
		Field:    "SoftLimitRatio",
		Accepted: fmt.Sprintf("a fraction of MEMDRAIN_MAX_MEMORY in (0, 1] such as %q, or %q for no soft limit (unset = the default 0.9)", "0.8", "off"),
		Example:  "0.75",
		Set: func(o *Options, v string) (string, bool) {
			r, problem, ok := envvar.SoftLimit(v)
			if ok {
				o.SoftLimitRatio = r
			}
			return problem, ok
		},
	},
}
