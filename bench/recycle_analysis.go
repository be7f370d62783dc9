package main

import (
	"maps"
	"slices"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
)

// The windows the figures are computed over.
const (
	bucketWidth = 100 * time.Millisecond // throughput is counted per bucket
	warmup      = time.Second            // left out of throughput: clients connecting
	aroundWin   = time.Second            // "around a recycle": this long either side of its start
)

// recycleResult is what one recycling run measured.
type recycleResult struct {
	Mode     string         `json:"mode"`
	Seconds  float64        `json:"seconds"`
	Requests int            `json:"requests"`
	Failed   int            `json:"failed"`
	Failures map[string]int `json:"failures"`
	// Retried counts the requests Go's transport sent more than once
	// (silently, on a kept-alive connection the server closed).
	Retried  int                    `json:"retried"`
	Groups   map[string]groupResult `json:"groups"`
	Recycles int                    `json:"recycles"`
	Crashes  int                    `json:"crashes"` // accidental exits: the baseline's every recycle is one

	P50Ms          float64   `json:"p50_ms"`
	P99Ms          float64   `json:"p99_ms"`
	MaxMs          float64   `json:"max_ms"`
	AroundRecycles latencies `json:"latency_around_recycles"`

	ThroughputSteadyRPS float64 `json:"throughput_steady_rps"`
	// ThroughputMinRPS is the lowest 100 ms bucket within a second of a
	// recycle (of the whole run if there was none).
	ThroughputMinRPS     float64 `json:"throughput_min_rps"`
	ThroughputMinAwayRPS float64 `json:"throughput_min_away_rps"` // the noise floor: the lowest bucket far from any recycle

	MaxRSSBytes  uint64       `json:"max_rss_bytes"`
	LimitBytes   uint64       `json:"limit_bytes"`
	MaxRSSRatio  float64      `json:"max_rss_over_limit"`
	WorkerMaxRSS []workerPeak `json:"worker_max_rss"`

	// From a worker's over-limit event to its replacement being ready,
	// and to its own exit.
	OverLimitToReadyMs latencies `json:"over_limit_to_replacement_ready_ms"`
	OverLimitToExitMs  latencies `json:"over_limit_to_old_exit_ms"`

	MasterCPUSeconds   float64 `json:"master_cpu_seconds"`
	MasterCPUPercent   float64 `json:"master_cpu_percent_of_a_core"`
	MasterRSSBytes     uint64  `json:"master_rss_bytes"`
	MasterPeakRSSBytes uint64  `json:"master_peak_rss_bytes"`

	series series // for the plots
}

// groupResult is one group of clients' share of a run.
type groupResult struct {
	Requests int            `json:"requests"`
	Failed   int            `json:"failed"`
	Failures map[string]int `json:"failures"`
	Retried  int            `json:"retried"`
	Latency  latencies      `json:"latency"`
}

// series is what the plots draw.
type series struct {
	start    time.Time
	buckets  []int // completed requests per bucketWidth from start
	recycles []time.Time
	samples  []rssSample
	limit    uint64
}

// analyze computes the figures of a run.
func analyze(rec *record) recycleResult {
	r := recycleResult{
		Mode: rec.cfg.mode(), Seconds: rec.end.Sub(rec.start).Seconds(), LimitBytes: rec.cfg.Limit,
	}
	inWindow := func(t time.Time) bool { return !t.Before(rec.start) && !t.After(rec.end) }

	var recycles []time.Time
	for _, e := range rec.events {
		switch {
		case e.IsRecycle() && inWindow(e.Time):
			recycles = append(recycles, e.Time)
		case e.Is(cluster.ExitedAccidental) && inWindow(e.Time):
			r.Crashes++
		}
	}
	r.Recycles = len(recycles)

	c := rec.count()
	r.Requests, r.Failed, r.Retried, r.Failures, r.Groups = c.Requests, c.Failed, c.Retried, c.Failures, c.Groups
	all, ends := c.latencies, c.ends
	var around []time.Duration
	for i, end := range ends {
		if near(end, recycles, aroundWin) {
			around = append(around, all[i])
		}
	}
	l := summarize(all)
	r.P50Ms, r.P99Ms, r.MaxMs = l.P50Ms, l.P99Ms, l.MaxMs
	r.AroundRecycles = summarize(around)

	n := int(rec.end.Sub(rec.start) / bucketWidth)
	counts := buckets(ends, rec.start, bucketWidth, n)
	r.ThroughputSteadyRPS, r.ThroughputMinRPS, r.ThroughputMinAwayRPS = throughput(counts, rec.start, recycles)

	perSlot := map[int]workerPeak{}
	for _, p := range rec.peaks {
		r.MaxRSSBytes = max(r.MaxRSSBytes, p.Bytes)
		if p.Bytes > perSlot[p.Slot].Bytes {
			perSlot[p.Slot] = p
		}
	}
	for _, slot := range slices.Sorted(maps.Keys(perSlot)) {
		r.WorkerMaxRSS = append(r.WorkerMaxRSS, perSlot[slot])
	}
	if r.LimitBytes > 0 {
		r.MaxRSSRatio = float64(r.MaxRSSBytes) / float64(r.LimitBytes)
	}

	toReady, toExit := handOvers(rec.events, rec.start, rec.end)
	r.OverLimitToReadyMs, r.OverLimitToExitMs = summarize(toReady), summarize(toExit)

	r.MasterCPUSeconds = rec.masterCPU.Seconds()
	if r.Seconds > 0 {
		r.MasterCPUPercent = 100 * r.MasterCPUSeconds / r.Seconds
	}
	r.MasterRSSBytes, r.MasterPeakRSSBytes = rec.masterRSS, rec.masterPeak
	r.series = series{start: rec.start, buckets: counts, recycles: recycles, samples: rec.samples, limit: rec.cfg.Limit}
	return r
}

// throughput returns, in requests per second, the median bucket after the
// warm-up (steady), the lowest bucket within aroundWin of a recycle, and
// the lowest bucket farther than that from every recycle: the noise floor
// that the lowest near a recycle must be read against. With no recycle,
// every bucket is away; with recycles everywhere, none is (then away is 0).
func throughput(counts []int, start time.Time, recycles []time.Time) (steady, aroundMin, awayMin float64) {
	skip := min(int(warmup/bucketWidth), len(counts))
	counts = counts[skip:]
	if len(counts) == 0 {
		return 0, 0, 0
	}
	perSecond := float64(time.Second / bucketWidth)
	lowAround, lowAway := -1, -1
	for i, c := range counts {
		mid := start.Add(time.Duration(skip+i)*bucketWidth + bucketWidth/2)
		low := &lowAway
		if near(mid, recycles, aroundWin+bucketWidth/2) {
			low = &lowAround
		}
		if *low < 0 || c < *low {
			*low = c
		}
	}
	return float64(median(counts)) * perSecond, float64(max(lowAround, 0)) * perSecond, float64(max(lowAway, 0)) * perSecond
}

// handOvers returns, for every worker that went over its memory limit
// between start and end, the time from its over-limit event to the next
// ready event of another process in its slot (its replacement), and to
// its own exit.
func handOvers(events []eventlog.Event, start, end time.Time) (toReady, toExit []time.Duration) {
	for i, e := range events {
		if !e.Is(cluster.OverLimit) || e.Reason != "memory" || e.Time.Before(start) || e.Time.After(end) {
			continue
		}
		readyFound, exitFound := false, false
		for _, f := range events[i+1:] {
			if !readyFound && f.Is(cluster.Ready) && f.Worker == e.Worker && f.Pid != e.Pid && !f.Time.Before(e.Time) {
				toReady = append(toReady, f.Time.Sub(e.Time))
				readyFound = true
			}
			if !exitFound && f.IsExit() && f.Pid == e.Pid {
				toExit = append(toExit, f.Time.Sub(e.Time))
				exitFound = true
			}
			if readyFound && exitFound {
				break
			}
		}
	}
	return toReady, toExit
}
