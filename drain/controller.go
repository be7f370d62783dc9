package drain

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout is the drain deadline used when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config configures a Controller. The zero value is ready to use.
type Config struct {
	// Timeout bounds a drain: once it has passed since Start, Done closes
	// even if work is still in flight. Zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives the drain's progress and recovered hook panics.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// The state word packs two flags and two counts, so that one atomic
// operation both changes a count and tells the caller whether that change
// ended the drain. Separate atomics would leave a window in which the last
// release and Start each believe the other will finish the drain.
//
// Work units (requests, and what callers count with Acquire) are what
// InFlight and Result.Abandoned report. Holds are the controller's own
// units: Serve's listeners and connections, and the running hooks. Both
// keep the drain open; the drain ends when both counts are zero.
const (
	flagDraining int64 = 1 << iota
	flagDone
	hold           // bits 2 to 32 count holds
	unit = 1 << 33 // bits 33 to 62 count work units
)

// A Controller counts the work a process has in flight and drains it: after
// Start, Done closes at the moment the count reaches zero, or when the
// deadline fires. One Controller serves one process for its whole life; it
// drains at most once.
//
// Acquire and Release are safe for concurrent use, lock-free and allocate
// nothing; all other methods are safe for concurrent use as well.
type Controller struct {
	state   atomic.Int64
	timeout time.Duration
	log     *slog.Logger

	draining chan struct{} // closed by Start
	done     chan struct{} // closed when the drain ends

	mu         sync.Mutex
	reason     Reason
	started    time.Time
	hooks      []func(Reason)
	hookPanics []error
	deadline   *time.Timer
	result     Result
}

// Result describes a finished drain.
type Result struct {
	// Reason is the reason given to the Start call that began the drain.
	Reason Reason
	// Started is when the drain began.
	Started time.Time
	// Duration is the time from Start to the end of the drain.
	Duration time.Duration
	// DeadlineExceeded reports that the drain ended because its deadline
	// fired rather than because its work finished.
	DeadlineExceeded bool
	// Abandoned is the number of units of work still in flight when the
	// deadline fired; zero when the drain finished in time.
	Abandoned int
	// HookPanics holds one error for each drain hook that panicked.
	HookPanics []error
}

// LogValue lets a Result be logged with log/slog as a group of attributes.
func (r Result) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("reason", r.Reason.String()),
		slog.Duration("duration", r.Duration),
		slog.Bool("deadline_exceeded", r.DeadlineExceeded),
		slog.Int("abandoned", r.Abandoned),
	)
}

// New returns a Controller that is serving (not draining). It returns an
// error if cfg.Timeout is negative.
func New(cfg Config) (*Controller, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("drain: Config.Timeout is %v; accepted: a positive duration, or zero for the default %v", cfg.Timeout, DefaultTimeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Controller{
		timeout:  cfg.Timeout,
		log:      cfg.Logger,
		draining: make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

// Timeout returns the drain deadline the Controller applies after Start.
func (c *Controller) Timeout() time.Duration { return c.timeout }

// Acquire records the start of one unit of work and reports whether the
// work may proceed. It returns false once the drain has ended: the caller
// must then refuse the work and must not call Release. Work acquired while
// the drain is in progress is accepted and holds the drain open until it is
// released.
func (c *Controller) Acquire() bool {
	return c.add(unit)&flagDone == 0
}

// Release records the end of one unit of work acquired with Acquire. If a
// drain is in progress and this was the last unit, Release ends the drain
// before it returns: Done is closed by this call.
func (c *Controller) Release() { c.sub(unit) }

// add adds n (unit or hold) unless the drain has ended, and returns the
// state word after the addition, so the HTTP handler learns whether a
// drain is in progress from the same atomic operation.
func (c *Controller) add(n int64) int64 {
	s := c.state.Add(n)
	if s&flagDone != 0 {
		c.state.Add(-n)
	}
	return s
}

// sub takes back what add added, ending the drain if nothing is left.
func (c *Controller) sub(n int64) {
	if c.state.Add(-n) == flagDraining {
		c.finishDrained()
	}
}

// finishDrained ends the drain if the state is exactly "draining, nothing in
// flight". The compare-and-swap makes it safe to call from every place that
// may have observed zero: a unit acquired in between keeps the drain open,
// and whichever of the candidates swaps first is the one that finishes.
func (c *Controller) finishDrained() {
	if c.state.CompareAndSwap(flagDraining, flagDraining|flagDone) {
		c.finish(false, 0)
	}
}

// Expire ends a drain in progress at once, as its deadline would: Done
// closes, and Result reports DeadlineExceeded and the work still in
// flight. It does nothing before Start or once the drain has ended. It is
// what an operator's second signal means: stop waiting.
func (c *Controller) Expire() {
	if c.IsDraining() {
		c.expire()
	}
}

// expire is the deadline: it ends the drain whatever is in flight.
func (c *Controller) expire() {
	for {
		s := c.state.Load()
		if s&flagDone != 0 {
			return
		}
		if c.state.CompareAndSwap(s, s|flagDone) {
			c.finish(true, int(s/unit))
			return
		}
	}
}

func (c *Controller) finish(deadlineExceeded bool, abandoned int) {
	c.mu.Lock()
	c.deadline.Stop()
	c.result = Result{
		Reason:           c.reason,
		Started:          c.started,
		Duration:         time.Since(c.started),
		DeadlineExceeded: deadlineExceeded,
		Abandoned:        abandoned,
		HookPanics:       append([]error(nil), c.hookPanics...),
	}
	result := c.result
	c.mu.Unlock()
	close(c.done)
	if deadlineExceeded {
		c.log.Warn("drain deadline exceeded", "drain", result)
	} else {
		c.log.Info("drain finished", "drain", result)
	}
}

// Start begins the drain with the given reason and reports whether this call
// began it. Only the first call has an effect: later calls return false and
// their reason is ignored. An invalid reason is replaced by Manual.
//
// Start closes Draining, runs the registered hooks in order in the calling
// goroutine, and returns. The hooks hold the drain open while they run, so
// Done never closes before they return (unless the deadline fires). If no
// work is in flight once the hooks are done, Done is closed before Start
// returns.
func (c *Controller) Start(reason Reason) bool {
	if !reason.Valid() {
		reason = Manual
	}
	c.mu.Lock()
	if c.reason != 0 {
		c.mu.Unlock()
		return false
	}
	c.reason = reason
	c.started = time.Now()
	hooks := c.hooks
	// One atomic add both raises the draining flag and takes a hold for the
	// hooks, so no release can finish the drain before they have run.
	c.state.Add(flagDraining + hold)
	c.deadline = time.AfterFunc(c.timeout, c.expire)
	c.mu.Unlock()
	close(c.draining)
	c.log.Info("drain started", "reason", reason.String(), "in_flight", c.InFlight(), "timeout", c.timeout)
	for _, hook := range hooks {
		c.runHook(hook, reason)
	}
	c.sub(hold)
	return true
}

// OnDrain registers hook to run once when the drain starts, with the reason
// it started. Hooks run in registration order inside Start; a hook
// registered after the drain started runs at once in the caller's goroutine.
// A hook that panics is recovered, logged and recorded in
// Result.HookPanics; the drain goes on.
func (c *Controller) OnDrain(hook func(Reason)) {
	if hook == nil {
		return
	}
	c.mu.Lock()
	reason := c.reason
	if reason == 0 {
		c.hooks = append(c.hooks, hook)
	}
	c.mu.Unlock()
	if reason != 0 {
		c.runHook(hook, reason)
	}
}

func (c *Controller) runHook(hook func(Reason), reason Reason) {
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("drain hook panicked: %v\n%s", v, debug.Stack())
			c.log.Error("drain hook panicked", "panic", fmt.Sprint(v))
			c.mu.Lock()
			c.hookPanics = append(c.hookPanics, err)
			c.mu.Unlock()
		}
	}()
	hook(reason)
}

// Draining returns a channel that is closed when the drain starts.
// Long-lived work (streams, server-sent events, websockets) should select on
// it and end early.
func (c *Controller) Draining() <-chan struct{} { return c.draining }

// Done returns a channel that is closed when the drain ends: at the moment
// the last unit of work in flight is released, or when the deadline fires.
func (c *Controller) Done() <-chan struct{} { return c.done }

// IsDraining reports whether the drain has started (and possibly ended).
func (c *Controller) IsDraining() bool { return c.state.Load()&flagDraining != 0 }

// InFlight returns the number of units of work currently acquired: under
// Serve or Handler, the requests in flight.
func (c *Controller) InFlight() int { return int(c.state.Load() / unit) }

// Reason returns the reason the drain started with, or zero before Start.
func (c *Controller) Reason() Reason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Result returns the outcome of the drain once Done is closed. Before that
// it returns the zero Result.
func (c *Controller) Result() Result {
	select {
	case <-c.done:
	default:
		return Result{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.result
}

// Wait blocks until the drain ends and returns its Result, or returns the
// context's error if ctx ends first.
func (c *Controller) Wait(ctx context.Context) (Result, error) {
	select {
	case <-c.done:
		return c.Result(), nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}
