package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/prometheus/client_golang/prometheus"
)

// A Collector collects a cluster's metrics. Make one with New; give it the
// Cluster with Watch; register it on a prometheus.Registry; chain its
// OnEvent into cluster.Config.OnEvent. Its methods may be called from any
// goroutine.
type Collector struct {
	maxMemory   uint64
	totalMemory uint64
	cluster     atomic.Pointer[cluster.Cluster]

	events         *prometheus.CounterVec
	recycles       *prometheus.CounterVec
	exits          *prometheus.CounterVec
	giveUps        prometheus.Counter
	reloadFailures prometheus.Counter
	drains         prometheus.Histogram
	replacements   prometheus.Histogram

	// What the events alone tell: written only by record.
	mu    sync.Mutex
	procs map[int]*procInfo // by pid, from Started to its exit
	over  map[int]overLimit // by slot, from OverLimit to the replacement's Ready
}

// Recycle reasons, the values of memdrain_recycles_total's label "reason".
var recycleReasons = []string{"memory", "total-memory", "requests", "age", "reload", "hung", "manual", "hard-limit"}

// durationBuckets span a fork and exec of a few milliseconds to drains held
// to a deadline of a minute.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// New returns a Collector for a cluster configured by cfg. It reads only
// cfg's limits (MaxMemory, TotalMemory), which it reports as gauges.
// Every recycle reason and exit kind is reported from the start, at zero.
func New(cfg cluster.Config) *Collector {
	m := &Collector{
		maxMemory:   cfg.MaxMemory,
		totalMemory: cfg.TotalMemory,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "memdrain_events_total",
			Help: "Supervisor events, by kind (cluster.EventKind's name).",
		}, []string{"kind"}),
		recycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "memdrain_recycles_total",
			Help: "Workers replaced, by reason: drained once their replacement was ready, drained past the hard memory ceiling (hard-limit), or killed as hung. Drains at shutdown are not counted.",
		}, []string{"reason"}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "memdrain_worker_exits_total",
			Help: "Worker process exits: planned (the master drained or killed it) or accidental (a crash, a signal, a failed start).",
		}, []string{"kind"}),
		giveUps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "memdrain_give_ups_total",
			Help: "Times the master gave up: too many crashes, or a memory limit below what the program needs.",
		}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "memdrain_reload_failures_total",
			Help: "Reloads stopped because their replacements kept failing.",
		}),
		drains: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "memdrain_drain_duration_seconds",
			Help:    "Time from a worker's drain start to its exit.",
			Buckets: durationBuckets,
		}),
		replacements: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "memdrain_over_limit_to_ready_seconds",
			Help:    "Time from a worker passing its memory limit to a new worker in its slot being ready.",
			Buckets: durationBuckets,
		}),
		procs: make(map[int]*procInfo),
		over:  make(map[int]overLimit),
	}
	for _, r := range recycleReasons {
		m.recycles.WithLabelValues(r)
	}
	m.exits.WithLabelValues("planned")
	m.exits.WithLabelValues("accidental")
	return m
}

// Watch gives m the Cluster whose Status it reports at each scrape. Until
// Watch, and whenever Status returns nil (in a worker, or while the master
// does not run), only the metrics fed by events are collected.
func (m *Collector) Watch(c *cluster.Cluster) { m.cluster.Store(c) }

// Descriptions of the metrics read from Status at scrape time.
var (
	workersDesc = prometheus.NewDesc("memdrain_workers",
		"Worker processes by state.", []string{"state"}, nil)
	memoryDesc = prometheus.NewDesc("memdrain_worker_memory_bytes",
		"The last memory sample of a worker process.", []string{"slot", "pid"}, nil)
	limitDesc = prometheus.NewDesc("memdrain_worker_memory_limit_bytes",
		"The memory above which a worker is recycled (Config.MaxMemory).", []string{"slot"}, nil)
	budgetDesc = prometheus.NewDesc("memdrain_memory_budget_bytes",
		"The memory of all workers together above which the largest is recycled (Config.TotalMemory).", nil, nil)
	inFlightDesc = prometheus.NewDesc("memdrain_worker_requests_in_flight",
		"Requests in flight in a worker process, as it last reported.", []string{"slot", "pid"}, nil)
	servedDesc = prometheus.NewDesc("memdrain_worker_requests_served_total",
		"Requests a worker process served, as it last reported.", []string{"slot", "pid"}, nil)
	startDesc = prometheus.NewDesc("memdrain_worker_start_time_seconds",
		"When a worker process was spawned, in seconds since the Unix epoch.", []string{"slot", "pid"}, nil)
)

var states = []cluster.WorkerState{cluster.StateStarting, cluster.StateServing, cluster.StateDraining}

// Describe sends the descriptions of every metric m may collect.
func (m *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{workersDesc, memoryDesc, limitDesc, budgetDesc, inFlightDesc, servedDesc, startDesc} {
		ch <- d
	}
	m.events.Describe(ch)
	m.recycles.Describe(ch)
	m.exits.Describe(ch)
	m.giveUps.Describe(ch)
	m.reloadFailures.Describe(ch)
	m.drains.Describe(ch)
	m.replacements.Describe(ch)
}

// Collect sends the event metrics and, when the watched cluster's master
// runs, a Status snapshot. It waits for the supervisor's loop to answer
// Status, as long as a scrape's other work, and never holds m's lock
// while it does.
func (m *Collector) Collect(ch chan<- prometheus.Metric) {
	m.events.Collect(ch)
	m.recycles.Collect(ch)
	m.exits.Collect(ch)
	m.giveUps.Collect(ch)
	m.reloadFailures.Collect(ch)
	m.drains.Collect(ch)
	m.replacements.Collect(ch)
	if m.totalMemory > 0 {
		ch <- prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, float64(m.totalMemory))
	}
	var status []cluster.WorkerStatus
	if c := m.cluster.Load(); c != nil {
		status = c.Status()
	}
	if status == nil {
		return
	}
	byState := make(map[cluster.WorkerState]int, len(states))
	slots := make(map[int]bool)
	for _, w := range status {
		byState[w.State]++
		slot, pid := strconv.Itoa(w.Worker), strconv.Itoa(w.Pid)
		ch <- prometheus.MustNewConstMetric(memoryDesc, prometheus.GaugeValue, float64(w.Memory), slot, pid)
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(w.InFlight), slot, pid)
		ch <- prometheus.MustNewConstMetric(servedDesc, prometheus.CounterValue, float64(w.Served), slot, pid)
		ch <- prometheus.MustNewConstMetric(startDesc, prometheus.GaugeValue, float64(w.Started.UnixNano())/float64(time.Second), slot, pid)
		if m.maxMemory > 0 && !slots[w.Worker] {
			slots[w.Worker] = true
			ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(m.maxMemory), slot)
		}
	}
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(byState[s]), s.String())
	}
}
