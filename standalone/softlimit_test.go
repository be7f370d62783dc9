package standalone

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/memdrain/memdrain/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// softLimitSeen serves one process with ListenAndServe under opts, and
// returns the Go soft memory limit its handler saw, and the limit after
// ListenAndServe returned.
func softLimitSeen(t *testing.T, opts Options) (during, after int64) {
	t.Helper()
	opts.Listener, opts.Logger, opts.Signals = listen(t), quiet, []os.Signal{}
	opts.Watch.Sampler = memory.SamplerFunc(func(int) (uint64, error) { return 1 << 20, nil }) // never over the limit
	c := newController(t, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, debug.SetMemoryLimit(-1))
	})
	done := make(chan served, 1)
	go func() {
		res, err := ListenAndServe(ctx, &http.Server{Handler: handler}, c, opts)
		done <- served{res, err}
	}()
	// The listener is open before ListenAndServe starts: the request
	// waits in its backlog until it is served.
	_, body, err := get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+opts.Listener.Addr().String())
	require.NoError(t, err)
	during, err = strconv.ParseInt(body, 10, 64)
	require.NoError(t, err, "body %q", body)
	cancel()
	select {
	case got := <-done:
		require.NoError(t, got.err)
	case <-time.After(waitLimit):
		t.Fatal("ListenAndServe did not return")
	}
	return during, debug.SetMemoryLimit(-1)
}

// noGOMEMLIMIT unsets GOMEMLIMIT for the test, and puts it back after.
func noGOMEMLIMIT(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
}

func TestListenAndServeSetsTheGoSoftLimitBelowTheWatchLimit(t *testing.T) {
	noGOMEMLIMIT(t)
	before := debug.SetMemoryLimit(-1)
	during, after := softLimitSeen(t, Options{Watch: memory.Watch{Limit: 1 << 30}})
	assert.Equal(t, int64(1<<30*9/10), during, "90 % of Watch.Limit, as in a cluster worker")
	assert.Equal(t, before, after, "put back when ListenAndServe returns")

	during, _ = softLimitSeen(t, Options{Watch: memory.Watch{Limit: 1 << 30}, SoftLimitRatio: 0.5})
	assert.Equal(t, int64(1<<29), during, "SoftLimitRatio")
	during, _ = softLimitSeen(t, Options{Watch: memory.Watch{Limit: 1 << 30}, SoftLimitRatio: -1})
	assert.Equal(t, before, during, "a negative SoftLimitRatio sets none")
	during, _ = softLimitSeen(t, Options{})
	assert.Equal(t, before, during, "no Watch.Limit, no soft limit")
}

func TestListenAndServeLeavesTheSoftLimitToGOMEMLIMIT(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "50MiB") // read by the runtime at start only: the limit stays what it was
	before := debug.SetMemoryLimit(-1)
	during, _ := softLimitSeen(t, Options{Watch: memory.Watch{Limit: 1 << 30}})
	assert.Equal(t, before, during, "GOMEMLIMIT wins")
}

func TestListenAndServeRejectsABadSoftLimitRatio(t *testing.T) {
	c := newController(t, time.Minute)
	_, err := ListenAndServe(context.Background(), &http.Server{}, c,
		Options{Listener: listen(t), Logger: quiet, Signals: []os.Signal{}, Watch: memory.Watch{Limit: 1 << 30}, SoftLimitRatio: 1.5})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Options.SoftLimitRatio is 1.5")
	assert.Contains(t, err.Error(), "accepted:")
	assert.False(t, c.IsDraining(), "nothing was served")
}
