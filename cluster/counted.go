package cluster

// uncountedReports is how many stats reports a ready worker may send
// without counting its requests before the master warns that MaxRequests
// cannot fire. A program that serves w.Listeners itself may wrap its
// handler with Worker.Handler a little after calling Ready.
const uncountedReports = 3

// checkCounted warns, once per master, when MaxRequests is set and a ready
// worker keeps reporting that it counts no requests: it serves without
// Worker.Serve or Worker.Handler, so its quota is never reached and it is
// never recycled for it.
func (m *master) checkCounted(p *proc, counts bool) {
	if counts || m.cfg.MaxRequests == 0 || m.warnedUncounted || p.readyAt.IsZero() {
		return
	}
	p.uncounted++
	if p.uncounted < uncountedReports {
		return
	}
	m.warnedUncounted = true
	m.log.Warn("Config.MaxRequests is set but worker reports no request count; it serves without Worker.Serve or Worker.Handler, so MaxRequests never recycles it",
		"worker", p.slot.id, "pid", p.pid, "max_requests", m.cfg.MaxRequests)
}
