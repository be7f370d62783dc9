package cluster

import (
	"fmt"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// sample takes the memory samples that are due, and starts the
// replacements that the limits call for: memory, the total budget, age.
func (m *master) sample() {
	now := time.Now()
	for _, p := range m.procs {
		if p.state == StateServing && !p.retireAt.IsZero() && !now.Before(p.retireAt) {
			// Acted on once: if the slot is busy (a replacement is queued
			// or under way), that replacement retires this worker anyway.
			p.retireAt = time.Time{}
			m.enqueue(p, drain.Age)
		}
		if p.state == StateStarting || now.Before(p.sampleAt) {
			continue
		}
		bytes, err := m.cfg.Sampler.Sample(p.pid)
		if err != nil {
			// A failed sample is skipped, never a recycle: the process may
			// be exiting, and its exit is handled on its own.
			m.log.Debug("memory sample failed; skipped", "worker", p.slot.id, "pid", p.pid, "err", err)
			p.sampleAt = now.Add(m.cfg.CheckInterval)
			continue
		}
		// Young: its first two samples (at ready, and one interval later at
		// most), or within its first interval of serving. A crossing then is
		// the program's start-up, not a leak, and replacing the worker would
		// only start another just like it.
		young := p.samples < 2 || now.Sub(p.readyAt) <= m.cfg.CheckInterval
		p.samples++
		p.memory = bytes
		over, next := p.meter.Observe(now, bytes)
		if over {
			next = m.cfg.CheckInterval // decided; what matters now is the replacement
		}
		p.sampleAt = now.Add(next)
		if p.state != StateServing {
			continue
		}
		switch {
		case over && young:
			m.bornTooBig(p)
		case over:
			if m.enqueue(p, drain.Memory) {
				m.emit(Event{Kind: OverLimit, Worker: p.slot.id, Pid: p.pid, Reason: drain.Memory, Memory: bytes})
			}
		case young:
			p.slot.tooBig = 0 // started under the limit: the limit fits the program
		}
	}
	m.checkBudget()
}

// bornTooBig handles a worker that is over the limit while young (see
// sample): replacing it at once would only start another just like it, in
// a loop.
// The replacement is backed off, doubling each time it happens again, and
// reported as the configuration problem it is.
func (m *master) bornTooBig(p *proc) {
	s := p.slot
	s.tooBig++
	delay := m.cfg.BackoffMin
	for range s.tooBig {
		delay = min(delay*2, m.cfg.BackoffMax) // doubling, capped before it can overflow
	}
	err := fmt.Errorf("worker uses %s right after starting, over MaxMemory %s: the limit is below what the program needs; replacing it in %v",
		drain.FormatSize(p.memory), drain.FormatSize(m.cfg.MaxMemory), delay)
	m.emit(Event{Kind: ConfigProblem, Worker: s.id, Pid: p.pid, Reason: drain.Memory, Memory: p.memory, Duration: delay, Err: err})
	if s.retry == nil && s.queued == 0 && s.next == nil {
		s.queued = drain.Memory
		m.retryAfter(s, delay)
	}
}

// checkBudget replaces the largest worker while all of them together use
// more than TotalMemory (what puma_worker_killer does), one at a time.
func (m *master) checkBudget() {
	if m.cfg.TotalMemory == 0 {
		return
	}
	var total uint64
	var largest *proc
	for _, p := range m.procs {
		total += p.memory
		if p.state == StateServing && p.slot.next == nil && p.slot.queued == 0 && (largest == nil || p.memory > largest.memory) {
			largest = p
		}
	}
	if total <= m.cfg.TotalMemory || largest == nil || m.replacing() > 0 || len(m.queue) > 0 {
		return
	}
	m.log.Warn("total memory over budget; replacing the largest worker",
		"total", drain.FormatSize(total), "budget", drain.FormatSize(m.cfg.TotalMemory), "worker", largest.slot.id, "pid", largest.pid)
	if m.enqueue(largest, drain.Memory) {
		m.emit(Event{Kind: OverLimit, Worker: largest.slot.id, Pid: largest.pid, Reason: drain.Memory, Memory: largest.memory})
	}
}

// scheduleSample arms the loop's timer for the next sample or retirement
// that is due.
func (m *master) scheduleSample() {
	m.sampleNext.Reset(max(time.Until(m.nextWake(time.Now())), 0))
}

// nextWake returns when the next sample or retirement is due.
func (m *master) nextWake(now time.Time) time.Time {
	next := now.Add(m.cfg.CheckInterval)
	for _, p := range m.procs {
		if p.state == StateStarting {
			continue
		}
		if p.sampleAt.Before(next) {
			next = p.sampleAt
		}
		if p.state == StateServing && !p.retireAt.IsZero() && p.retireAt.Before(next) {
			next = p.retireAt
		}
	}
	return next
}
