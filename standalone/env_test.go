package standalone

import (
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsFromEnvReadsTheVariablesOfOneProcess(t *testing.T) {
	for name, v := range map[string]string{
		"MEMDRAIN_MAX_MEMORY":     " 400Mi ",
		"MEMDRAIN_CHECK_INTERVAL": "250ms",
		"MEMDRAIN_SAMPLER":        "go",
		"MEMDRAIN_CONSECUTIVE":    "2",
		"MEMDRAIN_SOFT_LIMIT":     "0.75",
		"MEMDRAIN_DRAIN_TIMEOUT":  "20s",
	} {
		t.Setenv(name, v)
	}
	opts, err := OptionsFromEnv(Options{ProbeAddr: ":8081"})
	require.NoError(t, err)
	assert.Equal(t, uint64(400<<20), opts.Watch.Limit)
	assert.Equal(t, 250*time.Millisecond, opts.Watch.Interval)
	assert.Equal(t, memory.GoRuntime, opts.Watch.Sampler, "one process may measure itself with the runtime's figure")
	assert.Equal(t, 2, opts.Watch.Consecutive)
	assert.Equal(t, 0.75, opts.SoftLimitRatio)
	assert.Equal(t, ":8081", opts.ProbeAddr, "fields without a variable are kept")

	cfg, err := drain.ConfigFromEnv(drain.Config{Logger: quiet})
	require.NoError(t, err)
	assert.Equal(t, 20*time.Second, cfg.Timeout, "the drain timeout is the Controller's")
	assert.Equal(t, quiet, cfg.Logger)
}

func TestOptionsFromEnvReportsEveryBadVariable(t *testing.T) {
	t.Setenv("MEMDRAIN_MAX_MEMORY", "lots")
	t.Setenv("MEMDRAIN_CHECK_INTERVAL", "250")
	t.Setenv("MEMDRAIN_SOFT_LIMIT", "off")
	base := Options{ProbeAddr: ":8081"}
	opts, err := OptionsFromEnv(base)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `standalone: MEMDRAIN_MAX_MEMORY="lots"`)
	assert.Contains(t, err.Error(), `standalone: MEMDRAIN_CHECK_INTERVAL="250": a number without a unit; did you mean "250ms"?`)
	assert.NotContains(t, err.Error(), "MEMDRAIN_SOFT_LIMIT", `"off" is accepted`)
	assert.Equal(t, base, opts, "base is returned unchanged on an error")

	t.Setenv("MEMDRAIN_DRAIN_TIMEOUT", "30")
	_, err = drain.ConfigFromEnv(drain.Config{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `drain: MEMDRAIN_DRAIN_TIMEOUT="30": a number without a unit; did you mean "30s"?`)
}

// TestOptionsFromEnvZeroMaxMemoryTurnsOffTheContainerLimit: "0" is what an
// operator writes for no limit, so it must also stop ListenAndServe from
// taking one from the cgroup.
func TestOptionsFromEnvZeroMaxMemoryTurnsOffTheContainerLimit(t *testing.T) {
	t.Setenv("MEMDRAIN_MAX_MEMORY", "0")
	opts, err := OptionsFromEnv(Options{})
	require.NoError(t, err)
	assert.Zero(t, opts.Watch.Limit)
	assert.Negative(t, opts.ContainerLimitRatio, "no limit from the cgroup either")

	t.Setenv("MEMDRAIN_MAX_MEMORY", "")
	opts, err = OptionsFromEnv(Options{})
	require.NoError(t, err)
	assert.Zero(t, opts.ContainerLimitRatio, "unset: the cgroup's limit gives the default")
}
