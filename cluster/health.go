package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// answerPings answers the master's pings from a goroutine of its own, each
// after health (Config.Health) while the worker serves: not while it
// starts, when what health checks may not be up yet, nor once it drains,
// when the program may be closing it down. stop does not wait for that
// goroutine: it may be stuck in health, and the worker is exiting anyway.
func (w *Worker) answerPings(health func(context.Context) error) (pings chan<- uint64, stop func()) {
	// The master has one ping outstanding at a time: room for one is room
	// enough, and a ping that finds it taken goes unanswered.
	queue := make(chan uint64, 1)
	done := make(chan struct{})
	timeout := w.spec.Heartbeat / 2
	if timeout <= 0 {
		timeout = minDefaultHeartbeat / 2 // a spec from a master before the heartbeat
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case seq := <-queue:
				pong := message{Type: msgPong, Seq: seq}
				if w.ready.Load() && !w.Controller.IsDraining() {
					if err := checkHealth(health, timeout); err != nil {
						pong.Err = cutHealthError(err.Error())
						w.Logger.Error("health check failed; the master will replace this worker", "err", err)
					}
				}
				w.ctrl.send(pong)
			}
		}
	}()
	return queue, func() { close(done) }
}

// checkHealth runs health with a context that ends after timeout. A panic
// is a failure, not the end of the worker: the master replaces it in
// order.
func checkHealth(health func(context.Context) error, timeout time.Duration) (err error) {
	if health == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Config.Health panicked: %v", r)
		}
	}()
	if err := health(ctx); err != nil {
		return fmt.Errorf("Config.Health: %w", err)
	}
	return nil
}

// maxHealthError bounds the text of a Health error sent to the master, well
// inside one message line.
const maxHealthError = 4 << 10

func cutHealthError(text string) string {
	if len(text) <= maxHealthError {
		return text
	}
	return strings.ToValidUTF8(text[:maxHealthError], "") + "…"
}
