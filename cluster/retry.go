package cluster

import "time"

// A pendingRetry is a slot's one armed retry: a respawn after a crash, or
// a replacement retried after a failure or a backoff. Its identity tells a
// live timer from one that fired before it was cancelled.
type pendingRetry struct {
	s     *slot
	timer *time.Timer
}

// noRetry passed to retryAfter cancels the slot's retry.
const noRetry time.Duration = -1

// retryAfter is the only writer of s.retry. It cancels the retry pending,
// if any, and arms a new one that fires after delay, unless delay is
// noRetry. So a slot never has two: a leftover one would respawn without
// its backoff. A retry that fired before it was cancelled still reaches the
// loop; onRetry drops it, since it is no longer s.retry.
func (m *master) retryAfter(s *slot, delay time.Duration) {
	if s.retry != nil {
		s.retry.timer.Stop()
		s.retry = nil
	}
	if delay < 0 {
		return
	}
	r := &pendingRetry{s: s}
	r.timer = time.AfterFunc(delay, func() { m.post(evRetry{r}) })
	s.retry = r
}
