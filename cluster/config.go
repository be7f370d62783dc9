package cluster

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/memdrain/memdrain/memory"
)

// Config configures a cluster. Every field has a documented default for its
// zero value. Every field that holds a plain value can also be set from the
// environment (see FromEnv); the variable is named beside each field.
type Config struct {
	// Listen lists the addresses the master opens once and shares with
	// every worker: "host:port" for TCP, "unix:/path" for a unix socket.
	// MEMDRAIN_LISTEN (comma-separated). Default: ":8080". When systemd
	// passed listening sockets to the master (socket activation: LISTEN_PID
	// is the master, LISTEN_FDS > 0), they are shared instead and Listen
	// opens nothing: if set, it must name as many addresses as there are
	// sockets, and only orders them (by FileDescriptorName=, then by bound
	// address, then in the order passed).
	Listen []string
	// Listeners, if set, are already-open listening sockets (from systemd
	// socket activation, say, or a test on port 0) shared with the workers
	// instead of opening Listen. They must be *net.TCPListener or
	// *net.UnixListener. They take precedence over sockets passed by
	// systemd, which are then left alone. The caller keeps them and
	// closes them after Run:
	// at shutdown the master closes only its own copies, so while the
	// caller's stays open new connections queue rather than being refused.
	Listeners []net.Listener
	// Control, if set, is the path of a unix socket on which the master
	// answers status, reload, stop and recycle requests (ControlRequest;
	// memdrain status speaks it). It is made with mode 0600 and removed
	// when Run returns. A stale socket left there is replaced; a live one
	// (another master), a file that is no socket or one of another user
	// makes Run fail. Connections from another uid are refused (on Linux,
	// where the kernel tells the peer's uid). MEMDRAIN_CONTROL. Default:
	// "", no socket.
	Control string
	// Workers is the number of worker processes. MEMDRAIN_WORKERS, or
	// Node's CPU_COUNT. Default: the CPUs this process may use
	// (runtime.GOMAXPROCS(0)).
	Workers int

	// MaxMemory recycles a worker whose memory passes it, in bytes. A
	// worker already over it when it reports ready shows a limit below what
	// the program needs: its replacement is backed off (BackoffMin to
	// BackoffMax), and after three such workers in a row in a slot with the
	// backoff at BackoffMax, Run gives up with an error naming MaxMemory.
	// MEMDRAIN_MAX_MEMORY, as a size ("400Mi", "1.5Gi", "512MB").
	// Default: 0, no memory limit.
	MaxMemory uint64
	// HardMemory is a ceiling above MaxMemory, in bytes. A worker past
	// MaxMemory keeps serving until its replacement is ready; one that
	// grows past HardMemory meanwhile (its replacement still starting,
	// waiting its turn, or backed off) is drained at once, reported as a
	// HardLimit event. Its slot serves nobody until the replacement is
	// ready, which is better than the kernel killing the worker with every
	// request on it. MEMDRAIN_HARD_MEMORY, as a size. Default:
	// MaxMemory × 1.25; it must be at least MaxMemory, and is only
	// accepted with MaxMemory set.
	HardMemory uint64
	// TotalMemory recycles the largest worker when the memory of all
	// workers together passes it, in bytes. MEMDRAIN_TOTAL_MEMORY.
	// Default: 0, no budget.
	TotalMemory uint64
	// Sampler measures a worker's memory. MEMDRAIN_SAMPLER: "rss" or "anon".
	// Default: memory.RSS.
	Sampler memory.Sampler
	// CheckInterval is the longest time between two memory samples of a
	// worker; a worker nearing its limit is sampled sooner (see
	// memory.Meter). MEMDRAIN_CHECK_INTERVAL as a Go duration ("1s"), or
	// Node's CHECK_INTERVAL in milliseconds. Default: 1 s.
	CheckInterval time.Duration
	// Consecutive is how many samples in a row must be over a limit before
	// a worker is recycled. MEMDRAIN_CONSECUTIVE. Default: 1.
	Consecutive int
	// SoftLimitRatio sets each worker's Go soft memory limit
	// (debug.SetMemoryLimit) to this fraction of MaxMemory, so garbage is
	// collected before a recycle is triggered and only real growth recycles
	// a worker. Once the live heap reaches 95 % of the soft limit, the growth
	// is real, and the soft limit rises to MaxMemory, so the collector does
	// not run in vain until the recycle. It is skipped when GOMEMLIMIT
	// is set. MEMDRAIN_SOFT_LIMIT: a fraction in (0, 1], or "off".
	// Default: 0.9. Negative: off.
	SoftLimitRatio float64

	// MaxRequests recycles a worker after it served this many requests,
	// plus a random jitter of up to MaxRequestsJitter, so workers started
	// together do not recycle together (gunicorn's max_requests).
	// MEMDRAIN_MAX_REQUESTS, MEMDRAIN_MAX_REQUESTS_JITTER. Default: 0, off.
	MaxRequests       int
	MaxRequestsJitter int
	// MaxAge recycles a worker after it lived this long, plus a random
	// jitter of up to MaxAgeJitter. MEMDRAIN_MAX_AGE, MEMDRAIN_MAX_AGE_JITTER.
	// Default: 0, off.
	MaxAge       time.Duration
	MaxAgeJitter time.Duration

	// ReadyTimeout bounds the time a new worker has to report ready. A
	// replacement that misses it is killed and the old worker keeps
	// serving. MEMDRAIN_READY_TIMEOUT. Default: 30 s.
	ReadyTimeout time.Duration
	// DrainTimeout bounds a worker's drain (drain.Config.Timeout).
	// MEMDRAIN_DRAIN_TIMEOUT. Default: 30 s.
	DrainTimeout time.Duration
	// KillGrace is how long after DrainTimeout the master waits for a
	// draining worker to exit before it kills it with SIGKILL.
	// MEMDRAIN_KILL_GRACE. Default: 5 s.
	KillGrace time.Duration
	// HeartbeatTimeout is how long a worker may leave the master's
	// heartbeat unanswered before it is taken for hung: it is then killed
	// with SIGKILL and replaced, and reported as a Hung event. The master
	// pings each worker over its control socket every CheckInterval or
	// quarter of HeartbeatTimeout, whichever is shorter, one ping
	// outstanding at a time, and counts the timeout from the ping's sending, so a slow
	// master never blames a worker. A worker is held to it once it has
	// answered a ping or reported ready; one that hangs before, while it
	// starts, is left to ReadyTimeout. A hung serving worker's in-flight
	// requests fail with it: a hang leaves nothing better to do.
	// MEMDRAIN_HEARTBEAT_TIMEOUT. Default: 5 ×
	// CheckInterval, at least 2 s; at least 100 ms when set, since a
	// shorter timeout takes a loaded machine's scheduling delays for hangs.
	HeartbeatTimeout time.Duration
	// Health, if set, is called in each worker on every heartbeat while
	// the worker serves (after Ready, before its drain starts), with a
	// context that ends after half of HeartbeatTimeout, so that a program
	// can report that it is stuck while its process still runs (a
	// deadlocked pool, a wedged connection to a database). An error, a
	// panic, or a call that outlasts HeartbeatTimeout makes the master
	// treat the worker as hung: it is killed with SIGKILL, its in-flight
	// requests fail, and it is replaced; the Hung event carries the error.
	// One failure is enough: a check that should tolerate a blip must do
	// so itself. Calls never overlap. Health runs once a heartbeat interval
	// (see HeartbeatTimeout), so it must be cheap. It is read in the
	// worker, from the Config that the worker passes to Run. A program
	// that wants to be replaced without losing a request calls
	// Worker.Recycle instead.
	Health func(context.Context) error

	// MaxReplacements is how many replacements may be starting at once.
	// Each one is an extra process beside the worker it replaces, so a
	// fleet that crosses its limit together is recycled a few at a time.
	// A worker that drains, its replacement ready, no longer counts: a
	// slow drain does not hold back the replacement of another worker
	// passing its limit. MEMDRAIN_MAX_REPLACEMENTS. Default: 1.
	MaxReplacements int

	// BackoffMin and BackoffMax bound the delay before a crashed worker is
	// respawned; the delay doubles with each crash in a row and resets
	// after the worker stayed up for StableAfter. MEMDRAIN_BACKOFF_MIN,
	// MEMDRAIN_BACKOFF_MAX, MEMDRAIN_STABLE_AFTER. Defaults: 100 ms, 30 s,
	// 30 s.
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	StableAfter time.Duration
	// CrashLimit crashes within CrashWindow make the master give up once
	// no worker serves: it drains what is left and Run returns an error,
	// so systemd or Kubernetes sees the failure. While a worker serves, the
	// crashing slot is respawned with backoff instead. A replacement that
	// fails while the worker it replaces serves is no crash; a reload stops
	// after CrashLimit such failures in a row (ReloadFailed).
	// MEMDRAIN_CRASH_LIMIT, MEMDRAIN_CRASH_WINDOW. Defaults: 5 in 60 s.
	CrashLimit  int
	CrashWindow time.Duration

	// Launcher, if set, starts every worker process in place of the
	// re-executed binary (see Launcher). It exists for the memdrain
	// command, which runs any HTTP server as its workers; Listen and
	// Listeners must then be empty, since such workers share no sockets.
	// Default: nil, workers are this program.
	Launcher Launcher

	// WorkerEnv is added to the environment of every worker, after the
	// master's own environment.
	WorkerEnv []string
	// Logger receives every decision, with worker id, pid, reason, memory
	// and durations. Default: slog.Default().
	Logger *slog.Logger
	// OnEvent, if set, is called in the master for every decision (see
	// Event). It is called from the supervisor's loop: it must not block.
	OnEvent func(Event)
}
