package standalone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListenAndServeDrainsOnSignal(t *testing.T) {
	ln := listen(t)
	c := newController(t, time.Minute)
	srv := &http.Server{Handler: tagged("x")}
	done := make(chan served, 1)
	go func() {
		res, err := ListenAndServe(context.Background(), srv, c, Options{Listener: ln, Logger: quiet})
		done <- served{res, err}
	}()
	url := "http://" + ln.Addr().String()
	require.Eventually(t, func() bool {
		_, _, err := get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, url)
		return err == nil
	}, waitLimit, 5*time.Millisecond, "the server must come up")

	p, err := os.FindProcess(os.Getpid())
	require.NoError(t, err)
	require.NoError(t, p.Signal(os.Interrupt))
	select {
	case got := <-done:
		require.NoError(t, got.err)
		assert.Equal(t, drain.Signal, got.res.Reason)
		assert.Equal(t, 0, got.res.ExitCode())
	case <-time.After(waitLimit):
		t.Fatal("ListenAndServe did not return after SIGINT")
	}
}

func TestListenAndServeDrainsAtTheMemoryLimit(t *testing.T) {
	ln := listen(t)
	c := newController(t, time.Minute)
	var samples atomic.Int64
	grows := memory.SamplerFunc(func(pid int) (uint64, error) {
		if pid != os.Getpid() {
			return 0, fmt.Errorf("sampled pid %d, want self", pid)
		}
		n := samples.Add(1)
		if n == 2 {
			return 0, errors.New("a failed sample is skipped")
		}
		return uint64(n) << 20, nil // 1 MiB more each time
	})
	opts := Options{Listener: ln, Logger: quiet, Watch: memory.Watch{Limit: 5 << 20, Sampler: grows, Interval: time.Millisecond}}
	res, err := ListenAndServe(context.Background(), &http.Server{Handler: tagged("x")}, c, opts)
	require.NoError(t, err)
	assert.Equal(t, drain.Memory, res.Reason)
	assert.Equal(t, drain.ExitRecycle, res.ExitCode())
	assert.Equal(t, int64(5), samples.Load(), "the drain starts at the first sample at the limit")
}

func TestListenAndServeRejectsABadWatch(t *testing.T) {
	c := newController(t, time.Minute)
	_, err := ListenAndServe(context.Background(), &http.Server{}, c, Options{Watch: memory.Watch{Limit: 1 << 20, Interval: -time.Second}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Watch.Interval")
}

// TestListenAndServeClosesItsListenerWhenTheDrainEndedFirst: a drain that
// ended before serving began (a context cancelled at once, a signal during
// start-up) still leaves no listener open.
func TestListenAndServeClosesItsListenerWhenTheDrainEndedFirst(t *testing.T) {
	ln := listen(t)
	c := newController(t, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Start(drain.Manual)
	res, err := ListenAndServe(ctx, &http.Server{Handler: tagged("x")}, c, Options{Listener: ln, Logger: quiet})
	require.NoError(t, err)
	assert.Equal(t, drain.Manual, res.Reason)
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	assert.Error(t, err, "nothing listens any more")
}
