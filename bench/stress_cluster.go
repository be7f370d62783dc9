package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
)

// A stress scenario's cluster: the subject, started as a master on a free
// port of 127.0.0.1, its events kept, its workers' peak memory watched.

// clusterSpec is how a scenario starts the subject.
type clusterSpec struct {
	bin          string
	workers      int
	limit        uint64
	drainTimeout time.Duration // zero: the cluster's default
	args         []string      // more flags: -tls, -h2c
}

// guardRatio stops a scenario's load when a worker passes this multiple
// of its limit: the figure is already a failure, and a leak left running
// would take the machine's memory.
const guardRatio = 6

type stressCluster struct {
	proc  *subjectProc
	addr  string
	limit uint64

	mu      sync.Mutex
	events  []eventlog.Event
	live    map[int]int // pid -> slot
	peak    uint64      // the highest VmHWM of any worker so far, or peak at its exit
	changed chan struct{}
	guard   chan struct{} // closed when a worker passed guardRatio × limit

	stopWatch context.CancelFunc
	watching  sync.WaitGroup
}

// startCluster starts the subject and waits until every worker reported
// ready.
func startCluster(ctx context.Context, s clusterSpec) (*stressCluster, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &stressCluster{addr: addr, limit: s.limit, live: map[int]int{}, changed: make(chan struct{}), guard: make(chan struct{})}
	c.proc, err = startSubject(s.bin, subjectSpec{addr: addr, workers: s.workers, limit: s.limit, drainTimeout: s.drainTimeout, args: s.args}, c.handle)
	if err != nil {
		return nil, err
	}
	watchCtx, stop := context.WithCancel(ctx)
	c.stopWatch = stop
	c.watching.Add(1)
	go func() {
		defer c.watching.Done()
		c.watchMemory(watchCtx)
	}()
	ready := func(e eventlog.Event) bool { return e.Is(cluster.Ready) }
	if _, err := c.waitCount(ctx, 0, s.workers, 30*time.Second, ready); err != nil {
		c.close()
		return nil, fmt.Errorf("starting the subject: %w", err)
	}
	return c, nil
}

// handle keeps an event; it runs on the one goroutine reading the
// subject's output.
func (c *stressCluster) handle(e eventlog.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
	switch {
	case e.Is(cluster.Started) && e.Pid != 0:
		c.live[e.Pid] = e.Worker
	case e.IsExit():
		delete(c.live, e.Pid)
		// An exit carries the worker's highest resident memory in its
		// life, from the kernel: the sampling below reads VmHWM only every
		// sampleEvery, and a worker that grew after its last reading (one
		// leaking 200 MiB/s grows 10 MiB in 50 ms, and peaks as it exits)
		// would be reported lower than it reached.
		c.peak = max(c.peak, e.Memory)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// mark returns the number of events so far, to wait for later ones.
func (c *stressCluster) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// waitCount waits until n events from index from on match, and returns
// the last of them. It fails after timeout, when ctx ends, or when the
// master exited.
func (c *stressCluster) waitCount(ctx context.Context, from, n int, timeout time.Duration, match func(eventlog.Event) bool) (eventlog.Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		got, last := 0, eventlog.Event{}
		for _, e := range c.events[min(from, len(c.events)):] {
			if match(e) {
				got++
				last = e
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if got >= n {
			return last, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return eventlog.Event{}, ctx.Err()
		case <-c.proc.exited:
			return eventlog.Event{}, c.proc.running()
		case <-deadline.C:
			return eventlog.Event{}, fmt.Errorf("%d of %d events awaited in %v", got, n, timeout)
		}
	}
}

// count returns the number of events from index from on that match.
func (c *stressCluster) count(from int, match func(eventlog.Event) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events[min(from, len(c.events)):] {
		if match(e) {
			n++
		}
	}
	return n
}

// workers returns the live workers' pids by slot.
func (c *stressCluster) workers() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	bySlot := map[int]int{}
	for pid, slot := range c.live {
		bySlot[slot] = pid
	}
	return bySlot
}

// watchMemory reads every live worker's peak RSS each sampleEvery, until
// ctx ends, and closes guard when one passed guardRatio × the limit.
func (c *stressCluster) watchMemory(ctx context.Context) {
	ticker := time.NewTicker(sampleEvery)
	defer ticker.Stop()
	guarded := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		c.mu.Lock()
		pids := make([]int, 0, len(c.live))
		for pid := range c.live {
			pids = append(pids, pid)
		}
		c.mu.Unlock()
		for _, pid := range pids {
			peak, err := peakRSS(pid)
			if err != nil {
				continue // it exited since
			}
			c.mu.Lock()
			c.peak = max(c.peak, peak)
			over := c.limit > 0 && c.peak > guardRatio*c.limit
			c.mu.Unlock()
			if over && !guarded {
				guarded = true
				close(c.guard)
			}
		}
	}
}

// peakRatio returns the highest RSS any worker reached, over the limit.
func (c *stressCluster) peakRatio() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return float64(c.peak) / float64(max(c.limit, 1))
}

// close stops the subject (its master and workers) and the watch.
func (c *stressCluster) close() error {
	defer func() {
		c.stopWatch()
		c.watching.Wait()
	}()
	return c.proc.stop(20 * time.Second)
}

// closeInto closes c and notes on row a failure to stop it, unless the
// master had already exited (the scenario reports that itself).
func (c *stressCluster) closeInto(row *stressRow) {
	exited := c.proc.running() != nil
	if err := c.close(); err != nil && !exited {
		row.notef("stopping the subject: %v", err)
	}
}
