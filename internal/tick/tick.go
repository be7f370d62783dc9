// Package tick runs a function on a ticker in a goroutine of its own, until
// the function or its caller says stop.
package tick

import "time"

// Every calls tick once an interval in a goroutine of its own, until tick
// returns false or stop is called; stop returns once the goroutine has, so
// nothing outlives it.
func Every(interval time.Duration, tick func() (again bool)) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				if !tick() {
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
