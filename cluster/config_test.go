package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"
	"github.com/memdrain/memdrain/standalone"
)

// unjoin returns the errors that errors.Join joined into err, or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// lookupIn is a lookup over a map, so tests never touch the process's
// environment.
func lookupIn(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestWithDefaultsFillsEveryZeroField(t *testing.T) {
	d := Config{}.withDefaults()
	assert.Equal(t, []string{":8080"}, d.Listen)
	assert.Equal(t, runtime.GOMAXPROCS(0), d.Workers)
	assert.Equal(t, memory.RSS, d.Sampler)
	assert.Equal(t, time.Second, d.CheckInterval)
	assert.Equal(t, 1, d.Consecutive)
	assert.Equal(t, 0.9, d.SoftLimitRatio)
	assert.Equal(t, 30*time.Second, d.ReadyTimeout)
	assert.Equal(t, 30*time.Second, d.DrainTimeout)
	assert.Equal(t, 5*time.Second, d.KillGrace)
	assert.Equal(t, 5*time.Second, d.HeartbeatTimeout, "5 × the default CheckInterval")
	assert.Equal(t, 1, d.MaxReplacements)
	assert.Equal(t, 100*time.Millisecond, d.BackoffMin)
	assert.Equal(t, 30*time.Second, d.BackoffMax)
	assert.Equal(t, 30*time.Second, d.StableAfter)
	assert.Equal(t, 5, d.CrashLimit)
	assert.Equal(t, 60*time.Second, d.CrashWindow)
	assert.Same(t, slog.Default(), d.Logger)

	// Fields whose default is zero (off, none) stay zero.
	assert.Zero(t, d.MaxMemory)
	assert.Zero(t, d.TotalMemory)
	assert.Zero(t, d.MaxRequests)
	assert.Zero(t, d.MaxRequestsJitter)
	assert.Zero(t, d.MaxAge)
	assert.Zero(t, d.MaxAgeJitter)
}

// A field added to Config without a default in withDefaults, or without
// being listed here as zero by default, fails this test.
func TestWithDefaultsLeavesOnlyOffFieldsZero(t *testing.T) {
	zeroByDefault := []string{
		"Listeners", "MaxMemory", "HardMemory", "TotalMemory", "MaxRequests", "MaxRequestsJitter",
		"MaxAge", "MaxAgeJitter", "WorkerEnv", "OnEvent", "Health", "Launcher", "Control",
	}
	d := reflect.ValueOf(Config{}.withDefaults())
	for i := range d.NumField() {
		name := d.Type().Field(i).Name
		if slices.Contains(zeroByDefault, name) {
			assert.True(t, d.Field(i).IsZero(), "%s is zero by default, documented as off", name)
			continue
		}
		assert.False(t, d.Field(i).IsZero(), "withDefaults leaves Config.%s zero; give it its documented default", name)
	}
}

func TestHardMemoryDefaultsToAQuarterAboveMaxMemory(t *testing.T) {
	assert.Equal(t, uint64(500<<20), Config{MaxMemory: 400 << 20}.withDefaults().HardMemory)
	assert.Equal(t, uint64(450<<20), Config{MaxMemory: 400 << 20, HardMemory: 450 << 20}.withDefaults().HardMemory, "kept when set")
	assert.Zero(t, Config{}.withDefaults().HardMemory, "no ceiling without a limit")
	assert.Equal(t, uint64(math.MaxUint64), Config{MaxMemory: math.MaxUint64 - 1}.withDefaults().HardMemory, "saturates")
}

func TestWithDefaultsKeepsWhatIsSet(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	c := Config{
		Listen: []string{"unix:/tmp/x.sock"}, Workers: 3, Sampler: memory.Anon, CheckInterval: time.Minute,
		Consecutive: 2, SoftLimitRatio: -1, ReadyTimeout: time.Second, DrainTimeout: 2 * time.Second,
		KillGrace: time.Millisecond, HeartbeatTimeout: time.Minute, MaxReplacements: 2, BackoffMin: time.Second, BackoffMax: time.Hour,
		StableAfter: time.Hour, CrashLimit: 9, CrashWindow: time.Hour, Logger: logger,
	}
	d := c.withDefaults()
	assert.Equal(t, c, d)
	assert.Equal(t, d, d.withDefaults(), "idempotent")
	assert.Negative(t, d.SoftLimitRatio, "a negative ratio (off) is kept")
}

// The default HeartbeatTimeout follows CheckInterval, with a floor for
// short intervals and no overflow for long ones.
func TestTheDefaultHeartbeatTimeoutFollowsTheCheckInterval(t *testing.T) {
	for _, tc := range []struct{ check, want time.Duration }{
		{0, 5 * time.Second},
		{50 * time.Millisecond, 2 * time.Second},
		{400 * time.Millisecond, 2 * time.Second},
		{2 * time.Second, 10 * time.Second},
		{math.MaxInt64, math.MaxInt64},
	} {
		d := Config{CheckInterval: tc.check}.withDefaults()
		assert.Equal(t, tc.want, d.HeartbeatTimeout, "CheckInterval %v", tc.check)
	}
	assert.Equal(t, 300*time.Millisecond, Config{CheckInterval: time.Minute, HeartbeatTimeout: 300 * time.Millisecond}.withDefaults().HeartbeatTimeout,
		"a value that is set is kept")
}

func TestValidateAcceptsZeroAndDefaultsAndSensibleConfigs(t *testing.T) {
	require.NoError(t, Config{}.Validate())
	require.NoError(t, Config{}.withDefaults().Validate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, c := range []Config{
		{Listen: []string{":8080", "127.0.0.1:9090", "[::1]:80", "localhost:http", "unix:/run/app.sock"}},
		{Listeners: []net.Listener{ln}},
		{Workers: maxWorkers, MaxMemory: 1 << 20, TotalMemory: 1 << 20},
		{MaxMemory: 400 << 20, TotalMemory: 2 << 30, Sampler: memory.Anon},
		{MaxMemory: 400 << 20, HardMemory: 400 << 20}, {MaxMemory: 400 << 20, HardMemory: 4 << 30},
		{SoftLimitRatio: 1}, {SoftLimitRatio: -1}, {SoftLimitRatio: math.Inf(-1)},
		{MaxRequests: 1000, MaxRequestsJitter: 100, MaxAge: time.Hour, MaxAgeJitter: time.Minute},
		{MaxRequests: math.MaxInt},
		{BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond},
		{BackoffMin: 30 * time.Second},       // equal to the default BackoffMax
		{BackoffMax: 100 * time.Millisecond}, // equal to the default BackoffMin
		{DrainTimeout: 200 * time.Millisecond, KillGrace: 100 * time.Millisecond},
		{HeartbeatTimeout: 100 * time.Millisecond}, {HeartbeatTimeout: time.Hour, CheckInterval: time.Minute},
		{Sampler: memory.SamplerFunc(func(int) (uint64, error) { return 0, nil })},
	} {
		assert.NoError(t, c.Validate(), "%+v", c)
	}
}

func TestValidateRejects(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the one error
	}{
		{"negative workers", Config{Workers: -2}, []string{
			fmt.Sprintf("cluster: Config.Workers is -2; accepted: a count from 1 to 1024, or 0 for the CPUs this process may use (%d)", procs)}},
		{"absurd workers", Config{Workers: 5000}, []string{"Config.Workers is 5000", "from 1 to 1024"}},
		{"empty address", Config{Listen: []string{":8080", ""}}, []string{`Config.Listen[1] is ""`, "host:port", "empty"}},
		{"blank address", Config{Listen: []string{"  "}}, []string{"Config.Listen[0]", "empty"}},
		{"padded address", Config{Listen: []string{" :8080"}}, []string{"Config.Listen[0]", "white space"}},
		{"unix without path", Config{Listen: []string{"unix:"}}, []string{`Config.Listen[0] is "unix:"`, "unix:/path", "no socket path"}},
		{"port alone", Config{Listen: []string{"8080"}}, []string{`Config.Listen[0] is "8080"`, `did you mean ":8080"?`}},
		{"path alone", Config{Listen: []string{"/run/app.sock"}}, []string{"Config.Listen[0]", `did you mean "unix:/run/app.sock"?`}},
		{"no port", Config{Listen: []string{"localhost"}}, []string{`Config.Listen[0] is "localhost"`, "no port"}},
		{"duplicate address", Config{Listen: []string{":8080", ":8080"}}, []string{`Config.Listen[1] is ":8080"`, "Listen[0] is the same"}},
		{"nil listener", Config{Listeners: []net.Listener{nil}}, []string{"Config.Listeners[0] is a <nil>", "*net.TCPListener"}},
		{"Listen and Listeners", Config{Listen: []string{":8080"}, Listeners: []net.Listener{&net.TCPListener{}}}, []string{"Config.Listen", "Listeners"}},
		{"Listen with a Launcher", Config{Listen: []string{":8080"}, Launcher: noLauncher{}}, []string{
			`cluster: Config.Listen is [":8080"] (with 0 Listeners); accepted: no addresses and no Listeners when a Launcher starts the workers`}},
		{"tiny MaxMemory", Config{MaxMemory: 400}, []string{"Config.MaxMemory is 400 (bytes)", "at least 1MiB", "did you mean 400 << 20 (400MiB)?"}},
		{"tiny TotalMemory", Config{TotalMemory: 2}, []string{"Config.TotalMemory is 2 (bytes)", "0 for no budget", "2MiB"}},
		{"ceiling below the limit", Config{MaxMemory: 400 << 20, HardMemory: 300 << 20}, []string{
			"cluster: Config.HardMemory is 300MiB; accepted: 0 for the default (MaxMemory × 1.25, 500MiB here), or at least MaxMemory (400MiB)"}},
		{"ceiling without a limit", Config{HardMemory: 1 << 30}, []string{"Config.HardMemory is 1GiB", "0 while MaxMemory is 0 (no limit)"}},
		{"budget below the limit", Config{MaxMemory: 2 << 30, TotalMemory: 1 << 30}, []string{"Config.TotalMemory is 1GiB", "at least MaxMemory (2GiB)"}},
		{"GoRuntime sampler", Config{Sampler: memory.GoRuntime}, []string{"Config.Sampler is memory.GoRuntime", "memory.RSS, memory.Anon"}},
		{"negative check interval", Config{CheckInterval: -time.Second}, []string{"Config.CheckInterval is -1s", "a positive duration, or 0 for the default 1s"}},
		{"unitless check interval", Config{CheckInterval: 250}, []string{"Config.CheckInterval is 250ns", "did you mean 250 * time.Second or 250 * time.Millisecond?"}},
		{"negative consecutive", Config{Consecutive: -1}, []string{"Config.Consecutive is -1", "a positive count, or 0 for the default 1"}},
		{"ratio above 1", Config{SoftLimitRatio: 1.5}, []string{"Config.SoftLimitRatio is 1.5", "(0, 1]", "negative number for no soft limit"}},
		{"ratio NaN", Config{SoftLimitRatio: math.NaN()}, []string{"Config.SoftLimitRatio is NaN"}},
		{"ratio +Inf", Config{SoftLimitRatio: math.Inf(1)}, []string{"Config.SoftLimitRatio is +Inf"}},
		{"negative max requests", Config{MaxRequests: -1}, []string{"Config.MaxRequests is -1", "0 for off"}},
		{"negative jitter", Config{MaxRequests: 10, MaxRequestsJitter: -1}, []string{"Config.MaxRequestsJitter is -1"}},
		{"requests jitter alone", Config{MaxRequestsJitter: 100}, []string{"Config.MaxRequestsJitter is 100", "0 while MaxRequests is 0"}},
		{"requests overflow", Config{MaxRequests: 10, MaxRequestsJitter: math.MaxInt}, []string{"Config.MaxRequestsJitter", fmt.Sprint("at most ", math.MaxInt-10)}},
		{"negative max age", Config{MaxAge: -time.Hour}, []string{"Config.MaxAge is -1h0m0s", "0 for off"}},
		{"age jitter alone", Config{MaxAgeJitter: time.Minute}, []string{"Config.MaxAgeJitter is 1m0s", "0 while MaxAge is 0"}},
		{"age overflow", Config{MaxAge: time.Hour, MaxAgeJitter: math.MaxInt64}, []string{"Config.MaxAgeJitter", "fits in a time.Duration"}},
		{"negative ready timeout", Config{ReadyTimeout: -1}, []string{"Config.ReadyTimeout is -1ns", "the default 30s"}},
		{"unitless ready timeout", Config{ReadyTimeout: 30}, []string{"Config.ReadyTimeout is 30ns", "at least 1µs"}},
		{"negative drain timeout", Config{DrainTimeout: -time.Second}, []string{"Config.DrainTimeout is -1s"}},
		{"negative kill grace", Config{KillGrace: -time.Second}, []string{"Config.KillGrace is -1s", "the default 5s"}},
		{"kill grace overflow", Config{DrainTimeout: time.Hour, KillGrace: math.MaxInt64}, []string{"Config.KillGrace", "DrainTimeout (1h0m0s)"}},
		{"drain timeout overflow", Config{DrainTimeout: math.MaxInt64}, []string{"Config.DrainTimeout", "KillGrace (5s, the default)"}},
		{"negative replacements", Config{MaxReplacements: -3}, []string{"Config.MaxReplacements is -3", "the default 1"}},
		{"backoff inverted", Config{BackoffMin: time.Minute, BackoffMax: time.Second}, []string{"Config.BackoffMin is 1m0s", "at most BackoffMax (1s)"}},
		{"backoff min above default max", Config{BackoffMin: time.Minute}, []string{"Config.BackoffMin is 1m0s", "at most BackoffMax (30s, the default)"}},
		{"backoff max below default min", Config{BackoffMax: 50 * time.Millisecond}, []string{"Config.BackoffMax is 50ms", "at least BackoffMin (100ms, the default)"}},
		{"negative backoff", Config{BackoffMin: -1 * time.Second}, []string{"Config.BackoffMin is -1s"}},
		{"negative stable after", Config{StableAfter: -time.Second}, []string{"Config.StableAfter is -1s"}},
		{"negative crash limit", Config{CrashLimit: -1}, []string{"Config.CrashLimit is -1", "the default 5"}},
		{"negative heartbeat timeout", Config{HeartbeatTimeout: -time.Second}, []string{"Config.HeartbeatTimeout is -1s", "the default 5 × CheckInterval, at least 2s"}},
		{"unitless heartbeat timeout", Config{HeartbeatTimeout: 5}, []string{"Config.HeartbeatTimeout is 5ns", "at least 1µs"}},
		{"too short a heartbeat timeout", Config{HeartbeatTimeout: 50 * time.Millisecond}, []string{"Config.HeartbeatTimeout is 50ms", "at least 100ms", "kills healthy workers"}},
		{"negative crash window", Config{CrashWindow: -time.Second}, []string{"Config.CrashWindow is -1s", "the default 1m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			require.Error(t, err)
			errs := unjoin(err)
			require.Len(t, errs, 1, "one problem, one error: %v", err)
			msg := errs[0].Error()
			assert.True(t, strings.HasPrefix(msg, "cluster: Config."), msg)
			assert.Contains(t, msg, "; accepted: ")
			for _, want := range tc.want {
				assert.Contains(t, msg, want)
			}
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	err := Config{Workers: -1, MaxMemory: 10, CrashWindow: -time.Second}.Validate()
	require.Error(t, err)
	errs := unjoin(err)
	require.Len(t, errs, 3, "%v", err)
	assert.Contains(t, errs[0].Error(), "Config.Workers")
	assert.Contains(t, errs[1].Error(), "Config.MaxMemory")
	assert.Contains(t, errs[2].Error(), "Config.CrashWindow")
}

func TestFromEnvReadsEveryVariable(t *testing.T) {
	c, err := fromEnv(Config{}, lookupIn(map[string]string{
		"MEMDRAIN_LISTEN":              " :8080 , unix:/run/app.sock ",
		"MEMDRAIN_WORKERS":             "4",
		"MEMDRAIN_MAX_MEMORY":          "400Mi",
		"MEMDRAIN_HARD_MEMORY":         "450Mi",
		"MEMDRAIN_TOTAL_MEMORY":        "1.5Gi",
		"MEMDRAIN_SAMPLER":             "ANON",
		"MEMDRAIN_CHECK_INTERVAL":      "250ms",
		"MEMDRAIN_CONSECUTIVE":         "3",
		"MEMDRAIN_SOFT_LIMIT":          "0.8",
		"MEMDRAIN_MAX_REQUESTS":        "10000",
		"MEMDRAIN_MAX_REQUESTS_JITTER": "500",
		"MEMDRAIN_MAX_AGE":             "1h",
		"MEMDRAIN_MAX_AGE_JITTER":      "5m",
		"MEMDRAIN_READY_TIMEOUT":       "10s",
		"MEMDRAIN_DRAIN_TIMEOUT":       "25s",
		"MEMDRAIN_KILL_GRACE":          "2s",
		"MEMDRAIN_HEARTBEAT_TIMEOUT":   "3s",
		"MEMDRAIN_MAX_REPLACEMENTS":    "2",
		"MEMDRAIN_BACKOFF_MIN":         "50ms",
		"MEMDRAIN_BACKOFF_MAX":         "1m",
		"MEMDRAIN_STABLE_AFTER":        "45s",
		"MEMDRAIN_CRASH_LIMIT":         "10",
		"MEMDRAIN_CRASH_WINDOW":        "2m",
	}))
	require.NoError(t, err)
	assert.Equal(t, Config{
		Listen:            []string{":8080", "unix:/run/app.sock"},
		Workers:           4,
		MaxMemory:         400 << 20,
		HardMemory:        450 << 20,
		TotalMemory:       3 << 29,
		Sampler:           memory.Anon,
		CheckInterval:     250 * time.Millisecond,
		Consecutive:       3,
		SoftLimitRatio:    0.8,
		MaxRequests:       10000,
		MaxRequestsJitter: 500,
		MaxAge:            time.Hour,
		MaxAgeJitter:      5 * time.Minute,
		ReadyTimeout:      10 * time.Second,
		DrainTimeout:      25 * time.Second,
		KillGrace:         2 * time.Second,
		HeartbeatTimeout:  3 * time.Second,
		MaxReplacements:   2,
		BackoffMin:        50 * time.Millisecond,
		BackoffMax:        time.Minute,
		StableAfter:       45 * time.Second,
		CrashLimit:        10,
		CrashWindow:       2 * time.Minute,
	}, c)
	require.NoError(t, c.Validate())
}

func TestFromEnvValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		vars map[string]string
		want func(*Config)
	}{
		{"nothing set keeps base", nil, func(*Config) {}},
		{"empty is unset", map[string]string{"MEMDRAIN_WORKERS": "", "MEMDRAIN_MAX_MEMORY": "  "}, func(*Config) {}},
		{"Mi", map[string]string{"MEMDRAIN_MAX_MEMORY": "400Mi"}, func(c *Config) { c.MaxMemory = 400 << 20 }},
		{"fractional Gi", map[string]string{"MEMDRAIN_MAX_MEMORY": "1.5Gi"}, func(c *Config) { c.MaxMemory = 1536 << 20 }},
		{"MB", map[string]string{"MEMDRAIN_MAX_MEMORY": "512MB"}, func(c *Config) { c.MaxMemory = 512e6 }},
		{"0 is no limit", map[string]string{"MEMDRAIN_MAX_MEMORY": "0"}, func(c *Config) { c.MaxMemory = 0 }},
		{"hard memory", map[string]string{"MEMDRAIN_HARD_MEMORY": "1.5Gi"}, func(c *Config) { c.HardMemory = 1536 << 20 }},
		{"Node's CHECK_INTERVAL is milliseconds", map[string]string{"CHECK_INTERVAL": "250"}, func(c *Config) { c.CheckInterval = 250 * time.Millisecond }},
		{"CHECK_INTERVAL takes a duration", map[string]string{"CHECK_INTERVAL": "2s"}, func(c *Config) { c.CheckInterval = 2 * time.Second }},
		{"MEMDRAIN_CHECK_INTERVAL wins", map[string]string{"CHECK_INTERVAL": "250", "MEMDRAIN_CHECK_INTERVAL": "3s"}, func(c *Config) { c.CheckInterval = 3 * time.Second }},
		{"0 duration", map[string]string{"MEMDRAIN_MAX_AGE": "0"}, func(c *Config) { c.MaxAge = 0 }},
		{"soft limit off", map[string]string{"MEMDRAIN_SOFT_LIMIT": "off"}, func(c *Config) { c.SoftLimitRatio = -1 }},
		{"soft limit OFF", map[string]string{"MEMDRAIN_SOFT_LIMIT": "OFF"}, func(c *Config) { c.SoftLimitRatio = -1 }},
		{"soft limit 1", map[string]string{"MEMDRAIN_SOFT_LIMIT": "1"}, func(c *Config) { c.SoftLimitRatio = 1 }},
		{"CPU_COUNT", map[string]string{"CPU_COUNT": "6"}, func(c *Config) { c.Workers = 6 }},
		{"MEMDRAIN_WORKERS wins over CPU_COUNT", map[string]string{"CPU_COUNT": "6", "MEMDRAIN_WORKERS": "2"}, func(c *Config) { c.Workers = 2 }},
		{"an overridden CPU_COUNT is not read", map[string]string{"CPU_COUNT": "six", "MEMDRAIN_WORKERS": "2"}, func(c *Config) { c.Workers = 2 }},
		{"an empty MEMDRAIN_WORKERS lets CPU_COUNT through", map[string]string{"CPU_COUNT": "6", "MEMDRAIN_WORKERS": ""}, func(c *Config) { c.Workers = 6 }},
		{"sampler rss", map[string]string{"MEMDRAIN_SAMPLER": " rss "}, func(c *Config) { c.Sampler = memory.RSS }},
		{"one address", map[string]string{"MEMDRAIN_LISTEN": "127.0.0.1:0"}, func(c *Config) { c.Listen = []string{"127.0.0.1:0"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := Config{Workers: 9, MaxMemory: 1 << 30, CheckInterval: time.Minute, Listen: []string{":1"}}
			want := base
			tc.want(&want)
			got, err := fromEnv(base, lookupIn(tc.vars))
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

func TestFromEnvRejects(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        []string // substrings of the one error, beyond the name and value
	}{
		{"MEMDRAIN_WORKERS", "two", []string{`cluster: MEMDRAIN_WORKERS="two": accepted: a whole number from 0 to 1024 (0 = one per CPU`}},
		{"MEMDRAIN_WORKERS", "-1", []string{"negative", "from 0 to 1024"}},
		{"MEMDRAIN_WORKERS", "2000", []string{"more than 1024"}},
		{"MEMDRAIN_WORKERS", "99999999999999999999", []string{"out of range"}},
		{"CPU_COUNT", "1.5", []string{"a whole number"}},
		{"MEMDRAIN_LISTEN", ":8080,,:9090", []string{`address 2 ("")`, "empty", "unix:/path"}},
		{"MEMDRAIN_LISTEN", "8080", []string{`did you mean ":8080"?`}},
		{"MEMDRAIN_LISTEN", "unix:", []string{"no socket path"}},
		{"MEMDRAIN_MAX_MEMORY", "400", []string{`did you mean "400Mi"?`}},
		{"MEMDRAIN_MAX_MEMORY", "400m", []string{"milli"}},
		{"MEMDRAIN_MAX_MEMORY", "lots", []string{"accepted:", "Mi"}},
		{"MEMDRAIN_TOTAL_MEMORY", "-1Gi", []string{"negative"}},
		{"MEMDRAIN_HARD_MEMORY", "lots", []string{"accepted:", "Mi"}},
		{"MEMDRAIN_SAMPLER", "go", []string{"only the process that calls it", "accepted: rss", "anon"}},
		{"MEMDRAIN_SAMPLER", "pss", []string{"unknown sampler", "accepted: rss"}},
		{"MEMDRAIN_CHECK_INTERVAL", "250", []string{`did you mean "250ms"?`, "a Go duration"}},
		{"MEMDRAIN_CHECK_INTERVAL", "-1s", []string{"negative", "≥ 0"}},
		{"MEMDRAIN_CHECK_INTERVAL", "-5", []string{"negative"}},
		{"MEMDRAIN_CHECK_INTERVAL", "1 second", []string{"accepted: a Go duration", "the default 1s"}},
		{"MEMDRAIN_CHECK_INTERVAL", "10ns", []string{"shorter than 1µs"}},
		{"MEMDRAIN_DRAIN_TIMEOUT", "30", []string{`did you mean "30s"?`}},
		{"MEMDRAIN_MAX_AGE", "99999999999h", []string{"out of range"}},
		{"CHECK_INTERVAL", "fast", []string{"milliseconds"}},
		{"CHECK_INTERVAL", "-250", []string{"negative"}},
		{"CHECK_INTERVAL", "9223372036854775807", []string{"out of range"}},
		{"MEMDRAIN_CONSECUTIVE", "many", []string{"a whole number ≥ 0 (0 = the default 1)"}},
		{"MEMDRAIN_SOFT_LIMIT", "0", []string{`did you mean "off"?`}},
		{"MEMDRAIN_SOFT_LIMIT", "90", []string{`did you mean "0.9"?`}},
		{"MEMDRAIN_SOFT_LIMIT", "90%", []string{`did you mean "0.9"?`}},
		{"MEMDRAIN_SOFT_LIMIT", "-0.5", []string{`did you mean "off"?`}},
		{"MEMDRAIN_SOFT_LIMIT", "NaN", []string{"a fraction of MEMDRAIN_MAX_MEMORY in (0, 1]"}},
		{"MEMDRAIN_SOFT_LIMIT", "1e9", []string{"more than 1"}},
		{"MEMDRAIN_SOFT_LIMIT", "no", []string{`"off"`}},
		{"MEMDRAIN_MAX_REQUESTS", "1e6", []string{"a whole number ≥ 0 (0 = off)"}},
		{"MEMDRAIN_MAX_REQUESTS_JITTER", "-5", []string{"negative"}},
		{"MEMDRAIN_MAX_AGE_JITTER", "5", []string{`did you mean "5s"?`}},
		{"MEMDRAIN_READY_TIMEOUT", "soon", []string{"the default 30s"}},
		{"MEMDRAIN_KILL_GRACE", "5 s", nil},
		{"MEMDRAIN_HEARTBEAT_TIMEOUT", "5", []string{`did you mean "5s"?`, "the default 5 × CheckInterval, at least 2s"}},
		{"MEMDRAIN_HEARTBEAT_TIMEOUT", "-1s", []string{"negative"}},
		{"MEMDRAIN_MAX_REPLACEMENTS", "x", []string{"the default 1"}},
		{"MEMDRAIN_BACKOFF_MIN", "100", []string{`did you mean "100ms"?`}},
		{"MEMDRAIN_BACKOFF_MAX", "1d", nil},
		{"MEMDRAIN_STABLE_AFTER", "+", nil},
		{"MEMDRAIN_CRASH_LIMIT", "5.0", []string{"the default 5"}},
		{"MEMDRAIN_CRASH_WINDOW", "1mn", []string{"the default 1m0s"}},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			base := Config{Workers: 3}
			got, err := fromEnv(base, lookupIn(map[string]string{tc.name: tc.value}))
			require.Error(t, err)
			assert.Equal(t, base, got, "on an error, base comes back unchanged")
			errs := unjoin(err)
			require.Len(t, errs, 1, "%v", err)
			msg := errs[0].Error()
			assert.True(t, strings.HasPrefix(msg, fmt.Sprintf("cluster: %s=%q: ", tc.name, tc.value)), msg)
			assert.Contains(t, msg, "accepted: ")
			for _, want := range tc.want {
				assert.Contains(t, msg, want)
			}
		})
	}
}

func TestFromEnvReportsEveryBadVariable(t *testing.T) {
	_, err := fromEnv(Config{}, lookupIn(map[string]string{
		"MEMDRAIN_WORKERS":     "two",
		"MEMDRAIN_MAX_MEMORY":  "400",
		"MEMDRAIN_CRASH_LIMIT": "-1",
		"MEMDRAIN_KILL_GRACE":  "5s", // fine
	}))
	errs := unjoin(err)
	require.Len(t, errs, 3, "%v", err)
	for i, name := range []string{"MEMDRAIN_WORKERS", "MEMDRAIN_MAX_MEMORY", "MEMDRAIN_CRASH_LIMIT"} {
		assert.Contains(t, errs[i].Error(), name)
	}
}

func TestFromEnvReadsTheProcessEnvironment(t *testing.T) {
	t.Setenv("MEMDRAIN_WORKERS", "5")
	t.Setenv("CPU_COUNT", "7")
	c, err := FromEnv(Config{Workers: 1})
	require.NoError(t, err)
	assert.Equal(t, 5, c.Workers)
}

// Config and the table of variables cannot drift apart: every field but the
// ones that cannot come from a string has a variable, and every variable
// sets an existing field.
func TestEveryConfigFieldHasAnEnvironmentVariable(t *testing.T) {
	noVariable := []string{"Listeners", "WorkerEnv", "Logger", "OnEvent", "Health", "Launcher"}
	byField := map[string][]string{}
	for _, e := range envVars {
		byField[e.Field] = append(byField[e.Field], e.Name)
	}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		if slices.Contains(noVariable, name) {
			assert.Empty(t, byField[name], "Config.%s is not meant to come from the environment", name)
			continue
		}
		assert.NotEmpty(t, byField[name], "Config.%s has no environment variable in envVars", name)
	}
	for field, names := range byField {
		_, ok := typ.FieldByName(field)
		assert.True(t, ok, "%v set Config.%s, which does not exist", names, field)
	}
}

// Each variable's example sets its own field, and nothing else.
func TestEveryEnvironmentVariableSetsItsField(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range envVars {
		assert.False(t, seen[e.Name], "%s is listed twice", e.Name)
		seen[e.Name] = true
		if e.YieldsTo != "" {
			assert.True(t, slices.ContainsFunc(envVars, func(o envVar) bool { return o.Name == e.YieldsTo && o.Field == e.Field }),
				"%s yields to %s, which must set the same field", e.Name, e.YieldsTo)
		}

		got, err := fromEnv(Config{}, lookupIn(map[string]string{e.Name: e.Example}))
		require.NoError(t, err, "the example of %s", e.Name)
		v := reflect.ValueOf(got)
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			if name == e.Field {
				assert.False(t, v.Field(i).IsZero(), "%s=%q leaves Config.%s zero", e.Name, e.Example, name)
			} else {
				assert.True(t, v.Field(i).IsZero(), "%s=%q sets Config.%s, not its own Config.%s", e.Name, e.Example, name, e.Field)
			}
		}
	}
}

// The variables named in Config's documentation are exactly the ones
// FromEnv reads.
func TestEnvironmentVariablesInConfigDocumentation(t *testing.T) {
	src, err := os.ReadFile("config.go")
	require.NoError(t, err)
	documented := regexp.MustCompile(`\b(MEMDRAIN_[A-Z_]*[A-Z]|CPU_COUNT|CHECK_INTERVAL)\b`).FindAllString(string(src), -1)
	slices.Sort(documented)
	documented = slices.Compact(documented)
	var read []string
	for _, e := range envVars {
		read = append(read, e.Name)
	}
	slices.Sort(read)
	assert.Equal(t, documented, read)
}

func TestCheckMemoryFits(t *testing.T) {
	const source = "cgroup v2 /sys/fs/cgroup/app.slice/memory.max"

	t.Run("does not fit", func(t *testing.T) {
		err := Config{Workers: 8, MaxMemory: 4 << 30}.checkMemoryFits(16<<30, source)
		require.EqualError(t, err, "cluster: 8 workers + 1 replacement × MaxMemory 4GiB = 36GiB, more than the 16GiB this process may use "+
			"(cgroup v2 /sys/fs/cgroup/app.slice/memory.max); lower MaxMemory or Workers, or set a TotalMemory budget that fits")
	})
	t.Run("fits exactly", func(t *testing.T) {
		require.NoError(t, Config{Workers: 3, MaxMemory: 4 << 30}.checkMemoryFits(16<<30, source))
	})
	t.Run("one byte over", func(t *testing.T) {
		err := Config{Workers: 3, MaxMemory: 4 << 30}.checkMemoryFits(16<<30-1, source)
		require.Error(t, err)
		// Rounded alike, the two sizes come with their bytes.
		assert.Contains(t, err.Error(), "= 16GiB (17179869184 bytes), more than the 16GiB (17179869183 bytes)")
	})
	t.Run("no limit is not checked", func(t *testing.T) {
		require.NoError(t, Config{Workers: 1000}.checkMemoryFits(0, source))
	})
	t.Run("default workers", func(t *testing.T) {
		procs := uint64(runtime.GOMAXPROCS(0))
		require.NoError(t, Config{MaxMemory: 1 << 30}.checkMemoryFits((procs+1)<<30, source))
		require.Error(t, Config{MaxMemory: 1 << 30}.checkMemoryFits((procs+1)<<30-1, source))
	})
	t.Run("several replacements", func(t *testing.T) {
		err := Config{Workers: 4, MaxReplacements: 2, MaxMemory: 1 << 30}.checkMemoryFits(4<<30, "machine total")
		require.EqualError(t, err, "cluster: 4 workers + 2 replacements × MaxMemory 1GiB = 6GiB, more than the 4GiB this process may use "+
			"(machine total); lower MaxMemory, Workers or MaxReplacements, or set a TotalMemory budget that fits")
	})
	t.Run("no more replacements than workers", func(t *testing.T) {
		require.NoError(t, Config{Workers: 2, MaxReplacements: 100, MaxMemory: 1 << 30}.checkMemoryFits(4<<30, source))
	})
	t.Run("a budget caps the sum", func(t *testing.T) {
		c := Config{Workers: 8, MaxMemory: 4 << 30, TotalMemory: 12 << 30}
		require.NoError(t, c.checkMemoryFits(16<<30, source))
		err := c.checkMemoryFits(8<<30, source)
		require.EqualError(t, err, "cluster: TotalMemory 12GiB is more than the 8GiB this process may use ("+source+"); lower TotalMemory")
	})
	t.Run("a budget alone", func(t *testing.T) {
		require.NoError(t, Config{TotalMemory: 1 << 30}.checkMemoryFits(1<<30, source))
		require.Error(t, Config{TotalMemory: 2 << 30}.checkMemoryFits(1<<30, source))
	})
	t.Run("a budget above the sum changes nothing", func(t *testing.T) {
		err := Config{Workers: 2, MaxMemory: 1 << 30, TotalMemory: 100 << 30}.checkMemoryFits(2<<30, source)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "2 workers + 1 replacement × MaxMemory 1GiB = 3GiB")
	})
	t.Run("overflow", func(t *testing.T) {
		err := Config{Workers: 1024, MaxMemory: math.MaxUint64}.checkMemoryFits(math.MaxUint64, source)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "overflows")
	})
}

// Validate and checkMemoryFits must survive configurations that Validate
// rejects: New calls Validate first, but nothing should rely on that to
// avoid a panic.
func TestNothingPanicsOnExtremeConfigs(t *testing.T) {
	extremes := []Config{
		{Workers: math.MaxInt, MaxReplacements: math.MaxInt, MaxMemory: math.MaxUint64, TotalMemory: 1},
		{Workers: math.MinInt, MaxReplacements: math.MinInt, MaxMemory: 1, TotalMemory: math.MaxUint64},
		{MaxRequests: math.MaxInt, MaxRequestsJitter: math.MaxInt, MaxAge: math.MaxInt64, MaxAgeJitter: math.MaxInt64},
		{MaxRequests: math.MinInt, MaxRequestsJitter: math.MinInt, MaxAge: math.MinInt64, MaxAgeJitter: math.MinInt64},
		{BackoffMin: math.MaxInt64, BackoffMax: math.MinInt64, DrainTimeout: math.MaxInt64, KillGrace: math.MaxInt64},
		{SoftLimitRatio: math.Inf(1), CheckInterval: math.MinInt64, Listen: []string{"", "unix:", ":", "[", "::::"}},
		{Listeners: []net.Listener{nil, nil}, Listen: []string{"\x00"}},
	}
	for _, c := range extremes {
		assert.NotPanics(t, func() {
			_ = c.Validate()
			_ = c.checkMemoryFits(0, "")
			_ = c.checkMemoryFits(math.MaxUint64, "")
			_ = c.withDefaults()
		}, "%+v", c)
	}
}

// FuzzFromEnv gives one value to every variable in turn: nothing may panic,
// an error must name the variable, and a value that FromEnv takes must
// leave a Config that Validate and checkMemoryFits can judge.
func FuzzFromEnv(f *testing.F) {
	for _, seed := range []string{
		"", "0", "1", "-1", "250", "1.5Gi", "400m", "off", "0.9", "90%", "NaN", "Inf", "1e9",
		"1h", "-1s", "99999999999h", "1.1.1s", ":8080,unix:", "unix:", "8080", ",", "uss", "go",
		"9223372036854775807", "18446744073709551616", "\x00", "∞", " 5 ", "0x10", "1_000",
	} {
		f.Add(seed)
	}
	for _, e := range envVars {
		f.Add(e.Example)
	}
	f.Fuzz(func(t *testing.T, value string) {
		for _, e := range envVars {
			c, err := fromEnv(Config{}, lookupIn(map[string]string{e.Name: value}))
			if err != nil {
				if !strings.Contains(err.Error(), e.Name) {
					t.Fatalf("%s=%q: the error does not name the variable: %v", e.Name, value, err)
				}
				if !strings.Contains(err.Error(), "accepted") {
					t.Fatalf("%s=%q: the error does not say what is accepted: %v", e.Name, value, err)
				}
				continue
			}
			_ = c.Validate()
			_ = c.checkMemoryFits(16<<30, "fuzz")
		}
	})
}

// A single process (standalone.OptionsFromEnv, drain.ConfigFromEnv) reads the
// variables it shares with a cluster as FromEnv does, with the same errors.
func TestOneProcessReadsTheSharedVariablesWithTheSameErrors(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"MEMDRAIN_MAX_MEMORY", "lots"},
		{"MEMDRAIN_MAX_MEMORY", "400"},
		{"MEMDRAIN_CHECK_INTERVAL", "250"},
		{"MEMDRAIN_CHECK_INTERVAL", "-1s"},
		{"CHECK_INTERVAL", "-5"},
		{"MEMDRAIN_CONSECUTIVE", "two"},
		{"MEMDRAIN_SOFT_LIMIT", "90%"},
		{"MEMDRAIN_SOFT_LIMIT", "0"},
		{"MEMDRAIN_DRAIN_TIMEOUT", "30"},
		{"MEMDRAIN_DRAIN_TIMEOUT", "1e400h"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, clusterErr := FromEnv(Config{})
			require.Error(t, clusterErr)
			_, optsErr := standalone.OptionsFromEnv(standalone.Options{})
			_, cfgErr := drain.ConfigFromEnv(drain.Config{})
			oneErr := optsErr
			if oneErr == nil {
				oneErr = cfgErr
			}
			require.Error(t, oneErr)
			_, oneMsg, _ := strings.Cut(oneErr.Error(), ": ") // "standalone: " or "drain: "
			assert.Equal(t, strings.TrimPrefix(clusterErr.Error(), "cluster: "), oneMsg)
		})
	}
}

// noLauncher is a Launcher for Validate's tests; it launches nothing.
type noLauncher struct{}

func (noLauncher) Launch(*Worker, func(*exec.Cmd) error) (Launched, error) {
	return nil, errors.New("noLauncher launches nothing")
}
