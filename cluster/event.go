package cluster

import (
	"fmt"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// EventKind names a decision of the supervisor.
type EventKind uint8

// The decisions the supervisor reports through Config.OnEvent.
const (
	// Started: a worker process was spawned.
	Started EventKind = iota + 1
	// Ready: a worker reported ready and now receives connections.
	Ready
	// OverLimit: a worker passed a limit (Event.Reason says which) and will
	// be replaced.
	OverLimit
	// Draining: a worker was told to drain, its replacement being ready.
	Draining
	// ExitedPlanned: a worker the master was draining exited. No respawn:
	// its replacement already serves (or, for a worker killed as Hung,
	// was started at the kill).
	ExitedPlanned
	// ExitedAccidental: a worker exited without being asked (a crash, a
	// signal, a non-zero exit). It will be respawned.
	ExitedAccidental
	// Respawn: a worker is being started again after an accident, after
	// Event.Duration of backoff.
	Respawn
	// ReadyTimeout: a new worker did not report ready in time and was
	// killed; the worker it was to replace keeps serving.
	ReadyTimeout
	// Killed: a draining worker outlived its drain timeout and was killed.
	Killed
	// ConfigProblem: a worker was over its memory limit when it became
	// ready (at its first sample); the limit is below what the program
	// needs. Its recycling is backed off, and after a few such workers in
	// a row at BackoffMax the master gives up. A worker that passes the
	// limit after it became ready, however soon, is a leak: OverLimit.
	ConfigProblem
	// GiveUp: too many crashes in the crash window, or a memory limit
	// below what the program needs (see ConfigProblem); the master stops.
	GiveUp
	// ReloadFailed: a reload stopped because its replacements kept failing
	// (exiting before ready, or missing ReadyTimeout); Event.Err names the
	// last cause. The workers it was to replace were never drained and
	// keep serving until the next reload.
	ReloadFailed
	// Hung: a worker left its heartbeat unanswered for HeartbeatTimeout,
	// or its Config.Health failed (Event.Err says which), and was killed
	// with SIGKILL. A serving worker's slot gets a new worker at once,
	// with no backoff, and the kill does not count toward CrashLimit: it
	// is the master's decision, like Killed, and giving up would drain the
	// workers that still serve. A hung starting worker is retried like a
	// ReadyTimeout; a hung draining worker's drain ends there.
	Hung
	// HardLimit: a worker passed Config.HardMemory before its replacement
	// was ready, and is drained at once (Event.Reason is drain.Memory);
	// its slot serves again once a replacement is ready.
	HardLimit
)

var eventNames = [...]string{
	Started:          "started",
	Ready:            "ready",
	OverLimit:        "over-limit",
	Draining:         "draining",
	ExitedPlanned:    "exited-planned",
	ExitedAccidental: "exited-accidental",
	Respawn:          "respawn",
	ReadyTimeout:     "ready-timeout",
	Killed:           "killed",
	ConfigProblem:    "config-problem",
	GiveUp:           "give-up",
	ReloadFailed:     "reload-failed",
	Hung:             "hung",
	HardLimit:        "hard-limit",
}

// String returns the kind's name, such as "exited-planned".
func (k EventKind) String() string {
	if k >= Started && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one decision of the supervisor.
type Event struct {
	Time   time.Time
	Kind   EventKind
	Worker int          // the worker's slot, 0 to Workers-1
	Pid    int          // the process concerned
	Reason drain.Reason // why it is replaced or drained, where that applies
	// Memory is the worker's last memory sample, in bytes. For
	// ExitedPlanned and ExitedAccidental it is the highest resident
	// memory the process reached in its life, where the system reports it
	// (Linux and macOS, from wait4), if that is higher: a worker that grows
	// while it drains peaks after the master's last sample.
	Memory uint64
	// Total, for OverLimit, is the memory of all workers together when
	// Config.TotalMemory chose this worker as the largest, in bytes; zero
	// when the worker passed its own MaxMemory. It is what tells the
	// budget's recycles from a worker's own, since both drain for
	// drain.Memory.
	Total uint64
	// Duration: for Ready, the time from spawn (the master asking for
	// the process, so the fork and exec count) to ready; for
	// ExitedPlanned, the drain's length; for Respawn, the backoff.
	Duration time.Duration
	Err      error // what went wrong, for accidents and timeouts
}

// WorkerState is where a worker process is in its life.
type WorkerState uint8

// The states of a worker process.
const (
	StateStarting WorkerState = iota + 1 // spawned, not yet ready
	StateServing                         // ready, receiving connections
	StateDraining                        // told to drain, finishing its requests
)

var stateNames = [...]string{StateStarting: "starting", StateServing: "serving", StateDraining: "draining"}

// String returns the state's name, such as "serving".
func (s WorkerState) String() string {
	if s >= StateStarting && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("WorkerState(%d)", uint8(s))
}

// MarshalText encodes s as its name, so a WorkerStatus reads well as JSON.
func (s WorkerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a name produced by MarshalText.
func (s *WorkerState) UnmarshalText(text []byte) error {
	for i, name := range stateNames {
		if name != "" && name == string(text) {
			*s = WorkerState(i)
			return nil
		}
	}
	return fmt.Errorf("cluster: unknown worker state %q; accepted: starting, serving, draining", text)
}

// WorkerStatus is a snapshot of one worker process. Its JSON form is what
// the benchmark harness's subject prints as JSON lines and the harness reads.
type WorkerStatus struct {
	Worker   int         `json:"worker"` // the slot
	Pid      int         `json:"pid"`
	State    WorkerState `json:"state"`
	Memory   uint64      `json:"memory"`    // the last memory sample, in bytes
	InFlight int         `json:"in_flight"` // as last reported by the worker
	Served   uint64      `json:"served"`    // requests served, as last reported by the worker
	Started  time.Time   `json:"started"`
	Restarts int         `json:"restarts"` // accidental exits in this slot so far
	// Reason is why this process was started as a replacement, that is
	// the slot's last recycle (for a draining one: why it drains); zero
	// for a first start or a respawn.
	Reason drain.Reason `json:"reason,omitempty"`
}
