package drain

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitLimit bounds every wait on an event in these tests; it is a safety
// net against a hang, never a measurement.
const waitLimit = 10 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newController(t testing.TB, timeout time.Duration) *Controller {
	t.Helper()
	c, err := New(Config{Timeout: timeout, Logger: quiet})
	require.NoError(t, err)
	return c
}

func TestNewDefaultsAndRejectsNegativeTimeout(t *testing.T) {
	c, err := New(Config{})
	require.NoError(t, err)
	assert.Equal(t, DefaultTimeout, c.Timeout())

	_, err = New(Config{Timeout: -time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Config.Timeout")
	assert.Contains(t, err.Error(), "-1s")
}

func TestStartWithNothingInFlightEndsAtOnce(t *testing.T) {
	c := newController(t, time.Minute)
	assert.True(t, c.Start(Memory))
	assert.True(t, testkit.IsClosed(c.Draining()))
	assert.True(t, testkit.IsClosed(c.Done()), "Done must be closed before Start returns")
	res := c.Result()
	assert.Equal(t, Memory, res.Reason)
	assert.False(t, res.DeadlineExceeded)
	assert.Zero(t, res.Abandoned)
}

func TestLastReleaseEndsTheDrain(t *testing.T) {
	c := newController(t, time.Minute)
	require.True(t, c.Acquire())
	require.True(t, c.Acquire())
	c.Start(Signal)
	assert.False(t, testkit.IsClosed(c.Done()))
	assert.Equal(t, 2, c.InFlight())
	c.Release()
	assert.False(t, testkit.IsClosed(c.Done()), "one unit is still in flight")
	c.Release()
	assert.True(t, testkit.IsClosed(c.Done()), "the last Release must close Done before it returns")
	assert.Equal(t, Signal, c.Result().Reason)
}

func TestWorkAcquiredDuringTheDrainHoldsItOpen(t *testing.T) {
	c := newController(t, time.Minute)
	require.True(t, c.Acquire())
	c.Start(Manual)
	require.True(t, c.Acquire(), "work may still arrive during a drain")
	c.Release()
	assert.False(t, testkit.IsClosed(c.Done()))
	c.Release()
	assert.True(t, testkit.IsClosed(c.Done()))
}

func TestAcquireAfterTheDrainEndedIsRefused(t *testing.T) {
	c := newController(t, time.Minute)
	c.Start(Manual)
	assert.False(t, c.Acquire())
	assert.Zero(t, c.InFlight(), "a refused Acquire must not leave a unit behind")
}

func TestFirstReasonWins(t *testing.T) {
	c := newController(t, time.Minute)
	require.True(t, c.Acquire())
	assert.True(t, c.Start(Memory))
	assert.False(t, c.Start(Signal))
	assert.Equal(t, Memory, c.Reason())
	c.Release()
	assert.Equal(t, Memory, c.Result().Reason)
}

func TestInvalidReasonBecomesManual(t *testing.T) {
	c := newController(t, time.Minute)
	c.Start(Reason(200))
	assert.Equal(t, Manual, c.Result().Reason)
}

func TestDeadlineEndsADrainThatNeverFinishes(t *testing.T) {
	c := newController(t, 20*time.Millisecond)
	for range 3 {
		require.True(t, c.Acquire())
	}
	c.Start(Age)
	testkit.WaitClosed(t, c.Done(), "the deadline")
	res := c.Result()
	assert.True(t, res.DeadlineExceeded)
	assert.Equal(t, 3, res.Abandoned)
	assert.GreaterOrEqual(t, res.Duration, 20*time.Millisecond)

	// Late releases after the deadline must neither panic nor change the result.
	for range 3 {
		c.Release()
	}
	assert.Equal(t, res, c.Result())
}

func TestResultBeforeTheEndIsZero(t *testing.T) {
	c := newController(t, time.Minute)
	require.True(t, c.Acquire())
	c.Start(Manual)
	assert.Equal(t, Result{}, c.Result())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Wait(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	c.Release()
	res, err := c.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, Manual, res.Reason)
}

func TestHooksRunOnceInOrderAndHoldTheDrainOpen(t *testing.T) {
	c := newController(t, time.Minute)
	var calls []string
	release := make(chan struct{})
	hookDone := make(chan struct{})
	c.OnDrain(func(r Reason) { calls = append(calls, "first:"+r.String()) })
	c.OnDrain(func(Reason) {
		calls = append(calls, "second")
		<-release
	})
	c.OnDrain(nil) // ignored
	go func() {
		c.Start(Requests)
		c.Start(Signal)
		close(hookDone)
	}()
	testkit.WaitClosed(t, c.Draining(), "the drain start")
	assert.False(t, testkit.IsClosed(c.Done()), "Done must wait for the hooks")
	close(release)
	testkit.WaitClosed(t, hookDone, "the hooks")
	testkit.WaitClosed(t, c.Done(), "the end of the drain")
	assert.Equal(t, []string{"first:requests", "second"}, calls)

	late := make(chan Reason, 1)
	c.OnDrain(func(r Reason) { late <- r })
	assert.Equal(t, Requests, <-late, "a hook registered after Start runs at once")
}

func TestPanickingHookIsRecoveredAndReported(t *testing.T) {
	c := newController(t, time.Minute)
	ran := false
	c.OnDrain(func(Reason) { panic("cleanup failed") })
	c.OnDrain(func(Reason) { ran = true })
	require.NotPanics(t, func() { c.Start(Manual) })
	assert.True(t, ran, "hooks after a panicking one still run")
	res := c.Result()
	require.Len(t, res.HookPanics, 1)
	assert.Contains(t, res.HookPanics[0].Error(), "cleanup failed")
}

func TestHungHookIsBoundedByTheDeadline(t *testing.T) {
	c := newController(t, 20*time.Millisecond)
	unblock := make(chan struct{})
	c.OnDrain(func(Reason) { <-unblock })
	started := make(chan struct{})
	go func() {
		defer close(started)
		c.Start(Manual)
	}()
	testkit.WaitClosed(t, c.Done(), "the deadline")
	res := c.Result()
	assert.True(t, res.DeadlineExceeded)
	assert.Zero(t, res.Abandoned, "the hook's own unit is not abandoned work")
	close(unblock)
	testkit.WaitClosed(t, started, "Start to return")
}

// TestDoneIsExactUnderConcurrency hammers the controller from many
// goroutines while Start lands at an arbitrary moment. Done must close
// exactly when no worker holds a unit (never early) and must close once
// every worker has stopped (never missed).
func TestDoneIsExactUnderConcurrency(t *testing.T) {
	const rounds, workers = 200, 8
	for round := range rounds {
		c := newController(t, time.Minute)
		var holding atomic.Int64 // units held, as the workers know it
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !c.IsDraining() {
					if !c.Acquire() {
						return
					}
					holding.Add(1)
					holding.Add(-1)
					c.Release()
				}
				// Some work still arrives during the drain.
				if c.Acquire() {
					holding.Add(1)
					holding.Add(-1)
					c.Release()
				}
			}()
		}
		checked := make(chan int64)
		go func() {
			<-c.Done()
			checked <- holding.Load()
		}()
		c.Start(Manual)
		wg.Wait()
		select {
		case held := <-checked:
			require.Zero(t, held, "round %d: Done closed while work was held", round)
		case <-time.After(waitLimit):
			t.Fatalf("round %d: Done never closed though every worker stopped", round)
		}
		require.False(t, c.Result().DeadlineExceeded)
		require.Zero(t, c.InFlight())
	}
}

// TestStartRacesTheLastRelease puts Start and the release of the only unit
// in flight side by side, many times: exactly one of them must end the
// drain (closing Done twice would panic; neither would hang).
func TestStartRacesTheLastRelease(t *testing.T) {
	for range 5000 {
		c := newController(t, time.Minute)
		require.True(t, c.Acquire())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); c.Release() }()
		go func() { defer wg.Done(); c.Start(Manual) }()
		wg.Wait()
		testkit.WaitClosed(t, c.Done(), "the end of the drain")
		require.False(t, c.Result().DeadlineExceeded)
	}
}

func TestReasonNames(t *testing.T) {
	for r := Manual; r <= Supervisor; r++ {
		text, err := r.MarshalText()
		require.NoError(t, err)
		var back Reason
		require.NoError(t, back.UnmarshalText(text))
		assert.Equal(t, r, back)
		assert.Equal(t, string(text), r.String())
	}
	_, err := Reason(0).MarshalText()
	assert.Error(t, err)
	var r Reason
	err = r.UnmarshalText([]byte("bogus"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"bogus"`)
	assert.Contains(t, err.Error(), "memory")
	assert.Equal(t, "Reason(99)", Reason(99).String())
}
