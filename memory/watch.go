package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// A Watch samples one process's memory and starts a drain with reason
// Memory once the process is over its limit. It paces its samples with a
// Meter.
type Watch struct {
	// Limit is the memory limit in bytes; it must be positive.
	Limit uint64
	// Sampler measures the memory; nil means RSS.
	Sampler Sampler
	// Pid is the process to watch; zero means this process.
	Pid int
	// Interval is the longest wait between samples; zero means 1 s.
	Interval time.Duration
	// Consecutive is how many samples in a row must be over the limit;
	// zero means 1.
	Consecutive int
	// Logger receives failed samples and the crossing; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Validate reports a misconfigured Watch, naming the field and what it
// accepts.
func (w Watch) Validate() error {
	if w.Limit == 0 {
		return errors.New("memory: Watch.Limit is 0; accepted: a positive number of bytes")
	}
	if w.Interval < 0 {
		return fmt.Errorf("memory: Watch.Interval is %v; accepted: a positive duration, or zero for 1s", w.Interval)
	}
	if w.Consecutive < 0 {
		return fmt.Errorf("memory: Watch.Consecutive is %d; accepted: a positive count, or zero for 1", w.Consecutive)
	}
	return nil
}

// Run samples until the drain starts (by this Watch or anything else) or
// ctx ends, and returns nil then. A failed sample is logged and skipped:
// it never starts a drain. Run returns Validate's error at once if the
// Watch is misconfigured.
func (w Watch) Run(ctx context.Context, c *drain.Controller) error {
	if c == nil {
		return errors.New("memory: Watch.Run needs a *drain.Controller, got nil")
	}
	if err := w.Validate(); err != nil {
		return err
	}
	sampler, pid, log, interval := w.Sampler, w.Pid, w.Logger, w.Interval
	if sampler == nil {
		sampler = RSS
	}
	if pid == 0 {
		pid = os.Getpid()
	}
	if log == nil {
		log = slog.Default()
	}
	if interval == 0 {
		interval = time.Second
	}
	meter := Meter{Limit: w.Limit, Consecutive: w.Consecutive, Interval: interval}
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := interval
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Draining():
			return nil
		case <-timer.C:
		}
		bytes, err := sampler.Sample(pid)
		if err != nil {
			log.Warn("memory sample failed; skipped", "pid", pid, "err", err)
		} else {
			var over bool
			over, next = meter.Observe(time.Now(), bytes)
			if over {
				log.Warn("memory limit passed; draining", "pid", pid, "memory", FormatSize(bytes), "limit", FormatSize(w.Limit))
				c.Start(drain.Memory)
				return nil
			}
		}
		timer.Reset(next)
	}
}
