package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// treeLayout splits a supervisor's process tree, rooted at root, into the
// supervisor's own processes and its workers' trees (the app's memory).
type treeLayout func(t *procTable, root int) (own []int, workers [][]int)

// memdrainLayout: the master, and a shim per worker (its children). A
// worker's app is everything under its shim, not the shim: the shim is
// memdrain's, and memdrain leaves it out of the worker's figure too.
func memdrainLayout(t *procTable, root int) (own []int, workers [][]int) {
	own = []int{root}
	for _, shim := range t.children[root] {
		own = append(own, shim)
		workers = append(workers, t.descendants(shim))
	}
	return own, workers
}

// pm2Layout: PM2's daemon (in cluster mode, the cluster master), whose
// children are the app's workers, each with whatever it started.
func pm2Layout(t *procTable, root int) (own []int, workers [][]int) {
	for _, w := range t.children[root] {
		workers = append(workers, append([]int{w}, t.descendants(w)...))
	}
	return []int{root}, workers
}

// aloneLayout: the app alone, with no supervisor.
func aloneLayout(t *procTable, root int) (own []int, workers [][]int) {
	return nil, [][]int{append([]int{root}, t.descendants(root)...)}
}

// treeWatch samples a supervisor's tree every sampleEvery: the highest
// memory of any worker, and the supervisor's own CPU time and memory.
// Every process it ever saw in the tree is remembered, so that none
// outlives the run (kill).
type treeWatch struct {
	root   int
	layout treeLayout
	// guard is closed when a worker's tree passes guardRatio × limit, so
	// the load can stop before a leak left unchecked takes the machine's
	// memory.
	guard chan struct{}
	limit uint64

	mu         sync.Mutex
	seen       map[procID]bool
	workerPeak uint64 // the highest sum of a worker tree's RSS, sampled
	procPeak   uint64 // the highest VmHWM of any app process: a peak between samples
	ownBase    map[procID]time.Duration
	ownCPU     map[procID]time.Duration
	ownRSS     uint64 // at the latest sample
	ownPeak    uint64 // the highest sum of the supervisor's own RSS, sampled
	ownPSS     uint64 // the supervisor's own PSS summed, at the latest sample
	ownPeakPSS uint64 // its highest, sampled
	guarded    bool
	err        error

	stop context.CancelFunc
	done chan struct{}
}

// watchTree starts sampling the tree under root.
func watchTree(root int, layout treeLayout, limit uint64) *treeWatch {
	ctx, stop := context.WithCancel(context.Background())
	w := &treeWatch{
		root: root, layout: layout, limit: limit, guard: make(chan struct{}),
		seen: map[procID]bool{}, ownBase: map[procID]time.Duration{}, ownCPU: map[procID]time.Duration{},
		stop: stop, done: make(chan struct{}),
	}
	go func() {
		defer close(w.done)
		ticker := time.NewTicker(sampleEvery)
		defer ticker.Stop()
		for {
			w.sample()
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
	return w
}

// sample reads the tree once.
func (w *treeWatch) sample() {
	t, err := readProcs()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.err = err
		return
	}
	if _, ok := t.procs[w.root]; !ok {
		return // exited: nothing of the tree is known any more
	}
	w.seen[t.procs[w.root].id()] = true
	own, workers := w.layout(t, w.root)
	w.ownRSS = t.rssOf(own)
	w.ownPeak = max(w.ownPeak, w.ownRSS)
	w.ownPSS = 0
	for _, pid := range own {
		if p, err := pss(pid); err == nil {
			w.ownPSS += p
		}
	}
	w.ownPeakPSS = max(w.ownPeakPSS, w.ownPSS)
	for _, pid := range own {
		p := t.procs[pid]
		w.seen[p.id()] = true
		w.ownCPU[p.id()] = p.cpu
	}
	for _, tree := range workers {
		w.workerPeak = max(w.workerPeak, t.rssOf(tree))
		for _, pid := range tree {
			w.seen[t.procs[pid].id()] = true
			if hwm, err := peakRSS(pid); err == nil {
				w.procPeak = max(w.procPeak, hwm)
			}
		}
	}
	if w.limit > 0 && w.peakLocked() > guardRatio*w.limit && !w.guarded {
		w.guarded = true
		close(w.guard)
	}
}

func (w *treeWatch) peakLocked() uint64 { return max(w.workerPeak, w.procPeak) }

// begin starts the window over which ownCPU counts: the supervisor's CPU
// time so far is left out.
func (w *treeWatch) begin() {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.ownBase)
	for id, cpu := range w.ownCPU {
		w.ownBase[id] = cpu
	}
}

// treeFigures is what a watch measured.
type treeFigures struct {
	// WorkerPeak is the highest memory of any worker: its tree's RSS
	// summed at a sample, or one process's VmHWM if that was higher (a
	// peak between two samples).
	WorkerPeak uint64
	OwnCPU     time.Duration // the supervisor's own, since begin
	OwnRSS     uint64        // the supervisor's own, at the last sample
	OwnPeak    uint64        // the supervisor's own, the highest sampled
	OwnPSS     uint64        // the supervisor's own PSS summed, at the last sample
	OwnPeakPSS uint64        // the same, the highest sampled
	Guarded    bool          // a worker passed guardRatio × the limit
}

// figures samples once more and returns what the watch measured so far.
func (w *treeWatch) figures() (treeFigures, error) {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	f := treeFigures{WorkerPeak: w.peakLocked(), OwnRSS: w.ownRSS, OwnPeak: w.ownPeak, OwnPSS: w.ownPSS, OwnPeakPSS: w.ownPeakPSS, Guarded: w.guarded}
	for id, cpu := range w.ownCPU {
		f.OwnCPU += cpu - w.ownBase[id] // a process started since begin has no base: all its time counts
	}
	return f, w.err
}

// end stops sampling.
func (w *treeWatch) end() {
	w.stop()
	<-w.done
}

// alive returns the processes of the tree that still run, each with its
// command line, checking each one's start time so that a reused pid is
// never taken for one of the tree.
func (w *treeWatch) alive() map[procID]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[procID]string{}
	for id := range w.seen {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", id.pid))
		if err != nil {
			continue
		}
		p, err := parseStat(id.pid, b)
		if err != nil || p.start != id.start || zombie(b) {
			continue // another process, or exited and waiting for its reaper
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", id.pid))
		out[id] = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

// settle waits up to grace for every process of the tree to exit on its
// own (a worker finishing its shutdown after its supervisor exited).
func (w *treeWatch) settle(grace time.Duration) {
	deadline := time.Now().Add(grace)
	for len(w.alive()) > 0 && time.Now().Before(deadline) {
		time.Sleep(sampleEvery) // polling /proc: an exit of a process not our child has no event
	}
}

// kill sends SIGKILL to every process of the tree that still runs and
// returns an error naming them: nothing the harness started may outlive
// its run.
func (w *treeWatch) kill() error {
	var left []string
	for id, cmdline := range w.alive() {
		syscall.Kill(id.pid, syscall.SIGKILL)
		left = append(left, fmt.Sprintf("%d (%s)", id.pid, cmdline))
	}
	if len(left) > 0 {
		slices.Sort(left)
		return fmt.Errorf("processes outlived their supervisor's stop and were killed: %s", strings.Join(left, ", "))
	}
	return nil
}

// zombie reports whether a /proc/<pid>/stat text is a zombie's.
func zombie(stat []byte) bool {
	i := len(stat) - 1
	for i >= 0 && stat[i] != ')' {
		i--
	}
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
