// Package metrics exposes a memdrain cluster to Prometheus.
//
// A Collector is a prometheus.Collector that a program registers on a
// registry of its own. It is fed two ways: by the supervisor's events,
// through the function that OnEvent returns (chained into
// cluster.Config.OnEvent), which count recycles by reason, exits, give-ups
// and reload failures and time drains and replacements; and by
// Cluster.Status, read at each scrape, for the workers by state and each
// worker's memory, requests in flight and requests served.
//
// Serve the registry on an admin listener of the master's own (see the
// example), not on the cluster's listeners, which the workers serve.
// memdrain run --metrics serves this Collector the same way, beside the
// metrics of its front (requests by status code, their latency, the
// queue).
//
// The package is a module of its own (github.com/memdrain/memdrain/metrics)
// so that a program that does not export metrics does not download
// client_golang.
//
// The metrics:
//
//	memdrain_workers{state}                            gauge: processes by state (starting, serving, draining)
//	memdrain_worker_memory_bytes{slot,pid}             gauge: the last memory sample of each process
//	memdrain_worker_memory_limit_bytes{slot}           gauge: Config.MaxMemory, for each slot (when set)
//	memdrain_memory_budget_bytes                       gauge: Config.TotalMemory (when set)
//	memdrain_worker_requests_in_flight{slot,pid}       gauge: as last reported by the worker
//	memdrain_worker_requests_served_total{slot,pid}    counter: as last reported by the worker
//	memdrain_worker_start_time_seconds{slot,pid}       gauge: when the process was spawned, Unix time
//	memdrain_recycles_total{reason}                    counter: workers replaced, by reason
//	memdrain_worker_exits_total{kind}                  counter: exits, planned or accidental
//	memdrain_give_ups_total                            counter: the master gave up
//	memdrain_reload_failures_total                     counter: reloads stopped by failing replacements
//	memdrain_events_total{kind}                        counter: every supervisor event, by kind
//	memdrain_drain_duration_seconds                    histogram: a drain's length, to the process's exit
//	memdrain_over_limit_to_ready_seconds               histogram: a worker over its limit until its replacement is ready
//
// A recycle is counted when the worker it retires is told to drain, its
// replacement being ready, with the reason it was replaced for: memory
// (its own MaxMemory), total-memory (the largest worker under
// Config.TotalMemory), requests, age, reload, manual (Worker.Recycle);
// hard-limit when it passed HardMemory and was drained before its
// replacement was ready; hung when it was serving and was killed for an
// unanswered heartbeat or a failed health check. Drains at shutdown are no
// recycles. The over-limit histogram runs from a worker's OverLimit event
// to the next Ready event of another worker in its slot: its replacement,
// or whichever worker serves the slot next if it crashed.
//
// The per-process series carry the pid, so each process is a series of its
// own and a replaced worker's counter starts a new series rather than
// going backwards: sum(rate(memdrain_worker_requests_served_total[5m]))
// is the cluster's request rate across recycles.
package metrics
