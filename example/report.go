package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/loadgen"
	"github.com/memdrain/memdrain/memory"
)

// report gathers what the demo shows: the load's outcomes, the cluster's
// events, and the highest memory seen.
type report struct {
	limit   uint64
	started time.Time

	mu        sync.Mutex
	requests  int
	failed    int
	failures  map[string]int
	retried   int
	recycles  map[drain.Reason]int
	crashes   int
	highest   uint64
	lastCount int
}

func newReport(limit uint64) *report {
	return &report{limit: limit, started: time.Now(), failures: map[string]int{}, recycles: map[drain.Reason]int{}}
}

func (r *report) response(o loadgen.Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if o.Failure != "" {
		r.failed++
		r.failures[o.Failure]++
	}
	if o.Retried {
		r.retried++
	}
}

// event prints a line for every recycle and accident. It runs in the
// supervisor's loop, so it only prints and counts.
func (r *report) event(e cluster.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.highest = max(r.highest, e.Memory)
	at := time.Now().Format("15:04:05.000")
	switch e.Kind {
	case cluster.OverLimit:
		fmt.Printf("%s worker %d (pid %d) at %s, over the %s limit: starting its replacement\n", at, e.Worker, e.Pid, memory.FormatSize(e.Memory), memory.FormatSize(r.limit))
	case cluster.Draining:
		why := "its replacement is ready"
		if e.Reason == drain.Signal {
			why = "stopping"
		}
		fmt.Printf("%s worker %d (pid %d) draining (%s): %s\n", at, e.Worker, e.Pid, e.Reason, why)
	case cluster.ExitedPlanned:
		if e.Reason != drain.Signal { // the final drain is not a recycle
			r.recycles[e.Reason]++
		}
		fmt.Printf("%s worker %d (pid %d) drained and exited after %v\n", at, e.Worker, e.Pid, e.Duration.Round(time.Microsecond))
	case cluster.ExitedAccidental:
		r.crashes++
		fmt.Printf("%s worker %d (pid %d) exited unexpectedly: %v\n", at, e.Worker, e.Pid, e.Err)
	case cluster.ConfigProblem, cluster.GiveUp, cluster.ReadyTimeout, cluster.Killed, cluster.ReloadFailed, cluster.Hung, cluster.HardLimit:
		fmt.Printf("%s worker %d (pid %d) %s: %v\n", at, e.Worker, e.Pid, e.Kind, e.Err)
	}
}

// status prints the line of a second: every worker's memory, and the
// load's figures since the last line.
func (r *report) status(c *cluster.Cluster) {
	var workers []string
	r.mu.Lock()
	for _, s := range c.Status() {
		r.highest = max(r.highest, s.Memory)
		workers = append(workers, fmt.Sprintf("[%d] %s %s", s.Worker, bar(s.Memory, r.limit), memory.FormatSize(s.Memory)))
	}
	rate := r.requests - r.lastCount
	r.lastCount = r.requests
	line := fmt.Sprintf("%s %s | requests %d (%d/s) failed %d recycles %d",
		time.Now().Format("15:04:05"), strings.Join(workers, "  "), r.requests, rate, r.failed, r.totalRecycles())
	r.mu.Unlock()
	fmt.Println(line)
}

// bar draws memory against the limit in ten cells.
func bar(used, limit uint64) string {
	if limit == 0 {
		return ""
	}
	filled := min(int(used*10/limit), 10)
	return strings.Repeat("█", filled) + strings.Repeat("░", 10-filled)
}

func (r *report) totalRecycles() int {
	n := 0
	for _, k := range r.recycles {
		n += k
	}
	return n
}

func (r *report) summary(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(w, "\nsummary after %v\n", time.Since(r.started).Round(time.Second))
	fmt.Fprintf(w, "  requests   %d\n", r.requests)
	fmt.Fprintf(w, "  failed     %d", r.failed)
	if r.failed > 0 {
		fmt.Fprintf(w, " %v", r.failures)
	}
	fmt.Fprintf(w, "\n  retried    %d (by Go's transport, silently)\n", r.retried)
	reasons := slices.Sorted(maps.Keys(r.recycles))
	var parts []string
	for _, reason := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", r.recycles[reason], reason))
	}
	fmt.Fprintf(w, "  recycles   %d (%s)\n", r.totalRecycles(), strings.Join(parts, ", "))
	fmt.Fprintf(w, "  crashes    %d\n", r.crashes)
	if r.limit > 0 {
		fmt.Fprintf(w, "  max RSS    %s (%.2f× the %s limit)\n", memory.FormatSize(r.highest), float64(r.highest)/float64(r.limit), memory.FormatSize(r.limit))
	}
}
