package standalone

import (
	"log/slog"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/systemd"
)

// A notifier tells systemd, when it asked for notifications (NOTIFY_SOCKET,
// as for Type=notify), what a cluster master tells it: READY=1 once the
// process listens; STOPPING=1 when the drain starts, whatever started it;
// WATCHDOG=1 every half WATCHDOG_USEC; each with a STATUS= line. Its pings
// come from a ticker of their own, so they say that the process runs, not
// that it serves: a process with every handler stuck still pings (the
// cluster's come from its loop, and stop when the loop does).
type notifier struct {
	n        *systemd.Notifier // nil: systemd did not ask
	interval time.Duration     // of the watchdog's pings; 0 for none
}

// newNotifier reads the variables, and returns an error naming one it
// cannot use.
func newNotifier() (*notifier, error) {
	n, interval, err := systemd.Open()
	if err != nil {
		return nil, err
	}
	return &notifier{n: n, interval: interval}, nil
}

// run sends READY=1 for addr, then STOPPING=1 and the pings, until the
// function it returns is called.
func (nt *notifier) run(c *drain.Controller, addr string, log *slog.Logger) (stop func()) {
	if nt.n == nil {
		return func() {}
	}
	nt.n.Tell("READY=1\nSTATUS=serving on "+addr, log)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var ping <-chan time.Time // nil without a watchdog: never ready
		if nt.interval > 0 {
			t := time.NewTicker(nt.interval)
			defer t.Stop()
			ping = t.C
		}
		draining := c.Draining()
		stopping := func() {
			draining = nil
			nt.n.Tell("STOPPING=1\nSTATUS=draining: "+c.Reason().String(), log)
		}
		for {
			select {
			case <-draining:
				stopping()
			case <-ping:
				nt.n.Tell("WATCHDOG=1", log)
			case <-quit:
				// A drain with nothing in flight can end, and quit close,
				// before this loop saw it start: it is said all the same.
				select {
				case <-draining:
					stopping()
				default:
				}
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// close releases the socket; after run's stop, if run was called.
func (nt *notifier) close() { nt.n.Close() }
