package standalone

import (
	"os"
	"time"

	"github.com/memdrain/memdrain/internal/envvar"
	"github.com/memdrain/memdrain/memory"
)

// OptionsFromEnv returns base with each setting a single process shares
// with a cluster overridden by the same MEMDRAIN_* variable that
// cluster.FromEnv reads, when that variable is set and not empty:
//
//	MEMDRAIN_MAX_MEMORY      Watch.Limit     a size ("400Mi", "1.5Gi", "512MB"); "0" for none, which
//	                                         also sets ContainerLimitRatio to -1: no limit from the cgroup
//	MEMDRAIN_SAMPLER         Watch.Sampler   rss, anon or go
//	MEMDRAIN_CHECK_INTERVAL  Watch.Interval  a Go duration ("250ms")
//	CHECK_INTERVAL           Watch.Interval  milliseconds (Node's name; MEMDRAIN_CHECK_INTERVAL wins)
//	MEMDRAIN_CONSECUTIVE     Watch.Consecutive
//	MEMDRAIN_SOFT_LIMIT      SoftLimitRatio  a fraction in (0, 1], or "off"
//
// The values are read, and refused, exactly as cluster.FromEnv reads them,
// with the same errors (starting "standalone:"), all of them joined with
// errors.Join; on an error OptionsFromEnv returns base unchanged. Unlike
// the cluster's master, one process may use the "go" sampler, which
// measures the process that calls it.
//
// The drain timeout, MEMDRAIN_DRAIN_TIMEOUT, belongs to the Controller,
// which the program builds before ListenAndServe: drain.ConfigFromEnv reads it.
func OptionsFromEnv(base Options) (Options, error) {
	return envvar.Read("standalone", base, optionsVars, os.LookupEnv)
}

var optionsVars = []envvar.Var[Options]{
	maxMemoryVar(),
	{
		Name:     "MEMDRAIN_SAMPLER",
		Field:    "Watch.Sampler",
		Accepted: "rss (resident set size), anon (resident anonymous memory: heap and stacks, not shared code) or go (the Go runtime's own figure)",
		Example:  "anon",
		Set: func(o *Options, v string) (string, bool) {
			s, err := memory.SamplerByName(v)
			if err != nil {
				return "unknown sampler", false
			}
			o.Watch.Sampler = s
			return "", true
		},
	},
	envvar.DurationVar("MEMDRAIN_CHECK_INTERVAL", "Watch.Interval", func(o *Options) *time.Duration { return &o.Watch.Interval },
		"ms", "the default 1s"),
	envvar.MillisVar("CHECK_INTERVAL", "MEMDRAIN_CHECK_INTERVAL", "Watch.Interval", func(o *Options) *time.Duration { return &o.Watch.Interval },
		"the default 1s"),
	envvar.CountVar("MEMDRAIN_CONSECUTIVE", "Watch.Consecutive", func(o *Options) *int { return &o.Watch.Consecutive }, "the default 1"),
	envvar.SoftLimitVar("MEMDRAIN_SOFT_LIMIT", "SoftLimitRatio", func(o *Options) *float64 { return &o.SoftLimitRatio }, "the default 0.9"),
}

// maxMemoryVar reads MEMDRAIN_MAX_MEMORY as the cluster does. A "0" that
// an operator wrote means no limit at all, so it also turns off the limit
// ListenAndServe would take from the cgroup (a Watch.Limit of 0 alone
// means "none given").
func maxMemoryVar() envvar.Var[Options] {
	v := envvar.SizeVar("MEMDRAIN_MAX_MEMORY", "Watch.Limit", func(o *Options) *uint64 { return &o.Watch.Limit },
		"no limit", memory.ParseMemoryLimit) // worded as cluster.FromEnv words it
	set := v.Set
	v.Set = func(o *Options, s string) (string, bool) {
		problem, ok := set(o, s)
		if ok && o.Watch.Limit == 0 {
			o.ContainerLimitRatio = -1
		}
		return problem, ok
	}
	return v
}
