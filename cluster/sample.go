package cluster

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/memory"
)

// sample takes the memory samples that are due, and starts the
// replacements that the limits call for: memory, the hard ceiling, the
// total budget, age.
func (m *master) sample() {
	now := time.Now()
	worst := m.worstRate(now)
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
		// The first sample is taken when the worker reports ready. Over the
		// limit then, it was born too big: the limit does not fit the
		// program. Any crossing after that, however soon and however fast,
		// is growth while serving: a leak, recycled at once.
		first := p.samples == 0
		p.samples++
		p.memory = bytes
		bornTooBig := first && m.cfg.MaxMemory > 0 && bytes >= m.cfg.MaxMemory
		if bornTooBig && m.cfg.HardMemory > 0 {
			// Already over the limit, it keeps serving through its backoff:
			// draining it would leave its slot empty for as long. Its
			// ceiling is as far above what it used when ready as
			// HardMemory is above MaxMemory, for it may leak as well.
			p.ceiling.Limit = max(m.cfg.HardMemory, scale(bytes, float64(m.cfg.HardMemory)/float64(m.cfg.MaxMemory)))
		}
		p.meter.WorstRate, p.ceiling.WorstRate = worst, worst
		p.meter.Lead = m.lead(p, now, worst)
		over, next := p.meter.Observe(now, bytes)
		pastCeiling, untilCeiling := p.ceiling.Observe(now, bytes)
		switch {
		case over && p.state == StateServing:
			// Decided; until the replacement serves, what matters is
			// the ceiling.
			next = untilCeiling
		case over:
			next = m.cfg.CheckInterval // draining: sampled for Status only
		}
		p.sampleAt = now.Add(next)
		if p.state != StateServing {
			continue
		}
		switch {
		case bornTooBig:
			m.bornTooBig(p)
		case over:
			if m.enqueue(p, drain.Memory) {
				p.decided = m.snapshot(p, now, bytes)
				m.emit(Event{Kind: OverLimit, Worker: p.slot.id, Pid: p.pid, Reason: drain.Memory, Memory: bytes})
			}
		case first:
			p.slot.tooBig = 0 // under the limit when ready: the limit fits the program
		}
		if pastCeiling && p.state == StateServing {
			m.hardLimit(p)
		}
	}
	m.checkBudget()
}

// worstRate returns how fast any worker may start to grow at now: the
// growth of all of them together (see growth).
func (m *master) worstRate(now time.Time) float64 {
	var sum float64
	for _, p := range m.procs {
		sum += p.meter.Rate()
	}
	return m.growth.update(now, sum, m.cfg.CheckInterval)
}

// scale returns n × ratio, as far as a uint64 goes.
func scale(n uint64, ratio float64) uint64 {
	f := float64(n) * ratio
	if f >= math.MaxUint64 { // 2^64 as a float64
		return math.MaxUint64
	}
	return uint64(f)
}

// giveUpTooBig is how many workers in a row, in one slot, may be born too
// big with the backoff at BackoffMax before the master gives up.
const giveUpTooBig = 3

// bornTooBig handles a worker over the limit when it became ready: the
// limit is below what the program needs, and replacing the worker at once
// would only start another just like it, in a loop. Its replacement is
// backed off, the delay doubling with each such worker in a row in the
// slot, and each is reported as the configuration problem it is. Once
// giveUpTooBig of them in a row were backed off by BackoffMax, the master
// gives up: Run returns an error naming the limit, so that the operator
// sees it rather than a service that never stops churning. With the
// default backoff that is after about two and a half minutes.
func (m *master) bornTooBig(p *proc) {
	s := p.slot
	s.tooBig++
	delay := m.tooBigBackoff(s.tooBig)
	problem := fmt.Sprintf("worker uses %s right after starting, over MaxMemory %s: the limit is below what the program needs",
		memory.FormatSize(p.memory), memory.FormatSize(m.cfg.MaxMemory))
	if s.tooBig >= giveUpTooBig && m.tooBigBackoff(s.tooBig-giveUpTooBig+1) >= m.cfg.BackoffMax {
		m.emit(Event{Kind: ConfigProblem, Worker: s.id, Pid: p.pid, Reason: drain.Memory, Memory: p.memory, Err: errors.New(problem + "; giving up")})
		err := fmt.Errorf("cluster: gave up: worker %d used %s when it became ready, over MaxMemory %s, as did the %d before it in its slot with the backoff at BackoffMax (%v): the limit is below what the program needs; raise MaxMemory",
			s.id, memory.FormatSize(p.memory), memory.FormatSize(m.cfg.MaxMemory), giveUpTooBig-1, m.cfg.BackoffMax)
		m.emit(Event{Kind: GiveUp, Worker: s.id, Pid: p.pid, Memory: p.memory, Err: err})
		m.shutdown(err)
		return
	}
	m.emit(Event{Kind: ConfigProblem, Worker: s.id, Pid: p.pid, Reason: drain.Memory, Memory: p.memory, Duration: delay,
		Err: fmt.Errorf("%s; replacing it in %v", problem, delay)})
	if s.retry == nil && s.queued == 0 && s.next == nil {
		s.queued = drain.Memory
		m.retryAfter(s, delay)
	}
}

// tooBigBackoff returns the delay before replacing the n-th worker in a
// row born too big: BackoffMin doubled n times, up to BackoffMax.
func (m *master) tooBigBackoff(n int) time.Duration {
	delay := m.cfg.BackoffMin
	for range n {
		delay = min(delay*2, m.cfg.BackoffMax) // capped before it can overflow
	}
	return delay
}

// hardLimit drains p, past its ceiling (Config.HardMemory) before its
// replacement serves, without waiting any longer: its slot serves nobody
// for a moment, which is better than the kernel killing the worker with
// every request on it. The slot is filled again by the replacement on its
// way or by the backed-off one's retry; if the replacement was only
// waiting its turn in the queue (or none was asked for yet), a worker is
// started for the slot now, as after a crash: an empty slot does not wait
// for its turn.
func (m *master) hardLimit(p *proc) {
	s := p.slot
	ceiling := "HardMemory " + memory.FormatSize(p.ceiling.Limit)
	if p.ceiling.Limit != m.cfg.HardMemory {
		ceiling = fmt.Sprintf("its ceiling %s (over MaxMemory when ready, it may use as much more than it did then as HardMemory is above MaxMemory)", memory.FormatSize(p.ceiling.Limit))
	}
	err := fmt.Errorf("worker uses %s, past %s, before its replacement serves: drained now; its slot serves again once a replacement is ready",
		memory.FormatSize(p.memory), ceiling)
	m.emit(Event{Kind: HardLimit, Worker: s.id, Pid: p.pid, Reason: drain.Memory, Memory: p.memory, Err: err})
	m.drainProc(p, drain.Memory)
	if s.next != nil || s.retry != nil {
		return
	}
	m.dequeue(s)
	m.spawn(s, nil, drain.Memory)
}

// checkBudget replaces the largest worker while all of them together use
// more than TotalMemory (what puma_worker_killer does), one at a time.
func (m *master) checkBudget() {
	if m.cfg.TotalMemory == 0 {
		return
	}
	// A draining worker's memory is on its way out: counted, it would have
	// the next largest replaced too, now that a drain no longer holds the
	// replacements back.
	var total uint64
	var largest *proc
	for _, p := range m.procs {
		if p.state == StateDraining {
			continue
		}
		total += p.memory
		if p.state == StateServing && p.slot.next == nil && p.slot.queued == 0 && (largest == nil || p.memory > largest.memory) {
			largest = p
		}
	}
	if total <= m.cfg.TotalMemory || largest == nil || m.replacing() > 0 || len(m.queue) > 0 {
		return
	}
	m.log.Warn("total memory over budget; replacing the largest worker",
		"total", memory.FormatSize(total), "budget", memory.FormatSize(m.cfg.TotalMemory), "worker", largest.slot.id, "pid", largest.pid)
	if m.enqueue(largest, drain.Memory) {
		m.emit(Event{Kind: OverLimit, Worker: largest.slot.id, Pid: largest.pid, Reason: drain.Memory, Memory: largest.memory, Total: total})
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
