package cluster

import (
	"fmt"
	"strings"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/systemd"
)

// notifier tells systemd (sd_notify) what the loop decided. The loop calls
// update after every event, and it derives each message from the loop's
// own state, so it keeps no copy of a slot's facts: only what it has
// already told systemd. It is a no-op when NOTIFY_SOCKET is unset.
type notifier struct {
	sd        *systemd.Notifier
	told      bool   // READY=1 sent: every worker was ready once
	reloadsAt int    // master.reloads when RELOADING=1 was last sent
	reloading bool   // RELOADING=1 sent, READY=1 not yet
	stopping  bool   // STOPPING=1 sent
	status    string // the last STATUS= sent
	recycles  int    // workers drained to be replaced, counted in emit
	watchdog  time.Duration
	watchNext *time.Timer
}

// evWatchdog is the watchdog's tick. The loop itself sends WATCHDOG=1 when
// it handles it, so a loop that is stuck stops the pings and systemd
// restarts the service.
type evWatchdog struct{}

// startNotify opens the notification socket and arms the watchdog, when
// systemd asked for them. A malformed WATCHDOG_USEC is an error: left
// unpinged, systemd would kill the service.
func (m *master) startNotify() error {
	sd, interval, err := systemd.Open()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	m.notify.sd = sd
	if interval > 0 {
		m.notify.watchdog = interval
		m.notify.watchNext = time.AfterFunc(interval, func() { m.post(evWatchdog{}) })
	}
	return nil
}

// stopNotify stops the watchdog and closes the socket.
func (m *master) stopNotify() {
	if m.notify.watchNext != nil {
		m.notify.watchNext.Stop()
	}
	m.notify.sd.Close()
}

// onWatchdog pings systemd's watchdog and arms the next tick.
func (m *master) onWatchdog() {
	m.sdSend("WATCHDOG=1")
	m.notify.watchNext.Reset(m.notify.watchdog)
}

// count counts what the status line reports from events alone: a
// worker drained for any reason but the shutdown's is a recycle (a
// HardLimit drain emits Draining too).
func (n *notifier) count(e Event) {
	if e.Kind == Draining && e.Reason != drain.Signal && e.Reason != drain.Supervisor {
		n.recycles++
	}
}

// updateNotify sends what changed since the last event: READY=1 once every
// slot first serves; RELOADING=1 when a reload starts and READY=1 when it
// is over (every worker spawned before it replaced, or the reload
// stopped); STOPPING=1 when the shutdown starts; and STATUS= whenever the
// summary line changes.
func (m *master) updateNotify() {
	n := &m.notify
	if n.sd == nil {
		return
	}
	var msg []string
	switch {
	case m.stopping:
		if !n.stopping {
			n.stopping = true
			msg = append(msg, "STOPPING=1")
		}
	case !n.told:
		n.reloadsAt = m.reloads // a reload before READY=1 is part of the start
		if m.allServing() {
			n.told = true
			msg = append(msg, "READY=1")
		}
	case m.reloads != n.reloadsAt:
		n.reloadsAt, n.reloading = m.reloads, true
		msg = append(msg, "RELOADING=1")
		if usec := systemd.MonotonicUsec(); usec != "" {
			msg = append(msg, usec)
		}
	case n.reloading && !m.reloadPending():
		n.reloading = false
		msg = append(msg, "READY=1")
	}
	if status := m.statusLine(); status != n.status {
		n.status = status
		msg = append(msg, "STATUS="+status)
	}
	if len(msg) > 0 {
		m.sdSend(strings.Join(msg, "\n"))
	}
}

// sdSend sends one message; a full socket drops it rather than stall the
// loop (see systemd.Notifier.Tell).
func (m *master) sdSend(msg string) { m.notify.sd.Tell(msg, m.log) }

// allServing reports whether every slot has a serving worker.
func (m *master) allServing() bool {
	for _, s := range m.slots {
		if s.current == nil || s.current.state != StateServing {
			return false
		}
	}
	return true
}

// reloadPending reports whether the last reload still has workers to
// replace: a slot's serving worker spawned before it. A stopped reload
// has none; its old workers serve on.
func (m *master) reloadPending() bool {
	if m.lastReload.stopped {
		return false
	}
	for _, s := range m.slots {
		if s.current != nil && s.current.reloads < m.reloads {
			return true
		}
	}
	return false
}

// statusLine summarizes the workers for systemctl status, such as
// "2 workers serving, 1 starting; 14 recycles, 1 crash".
func (m *master) statusLine() string {
	var by [StateDraining + 1]int
	for _, p := range m.procs {
		by[p.state]++
	}
	var b strings.Builder
	switch {
	case m.stopping:
		b.WriteString("stopping: ")
	case m.notify.reloading:
		b.WriteString("reloading: ")
	}
	fmt.Fprintf(&b, "%d workers serving", by[StateServing])
	if by[StateStarting] > 0 {
		fmt.Fprintf(&b, ", %d starting", by[StateStarting])
	}
	if by[StateDraining] > 0 {
		fmt.Fprintf(&b, ", %d draining", by[StateDraining])
	}
	crashes := 0
	for _, s := range m.slots {
		crashes += s.restarts
	}
	fmt.Fprintf(&b, "; %d recycles, %d crashes", m.notify.recycles, crashes)
	return b.String()
}
