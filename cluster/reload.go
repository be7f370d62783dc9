package cluster

import (
	"fmt"
	"slices"

	"github.com/memdrain/memdrain/drain"
)

// reloadState is what the master knows of the last reload (SIGHUP or
// Cluster.Reload).
type reloadState struct {
	failures int  // its replacements that failed in a row
	stopped  bool // it gave up: the workers it had not replaced serve on
}

// reloadFailed counts a failure of a reload's replacement for slot s and
// reports whether the reload is over: stopped now, after CrashLimit
// failures in a row, or stopped before. A stopped reload retries nothing
// and emits ReloadFailed once, naming cause; the workers it had not
// replaced were never drained and serve on until the next reload.
func (m *master) reloadFailed(s *slot, cause error) bool {
	r := &m.lastReload
	if r.stopped {
		return true
	}
	r.failures++
	if r.failures < m.cfg.CrashLimit {
		return false
	}
	r.stopped = true
	m.queue = slices.DeleteFunc(m.queue, func(q *slot) bool { return q.queued == drain.Reload })
	for _, q := range m.slots {
		if q.queued == drain.Reload { // waiting out a backoff
			m.retryAfter(q, noRetry)
			q.queued = 0
		}
	}
	err := fmt.Errorf("reload stopped after %d replacements in a row failed (CrashLimit %d); the last: %w; the workers not yet replaced keep serving until the next reload",
		r.failures, m.cfg.CrashLimit, cause)
	m.emit(Event{Kind: ReloadFailed, Worker: s.id, Reason: drain.Reload, Err: err})
	return true
}

// reloadReady notes that one of the reload's replacements is ready.
func (m *master) reloadReady() { m.lastReload.failures = 0 }
