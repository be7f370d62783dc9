package systemd

import "time"

// Open returns the Notifier for NOTIFY_SOCKET and how often to ping the
// watchdog (WatchdogInterval: 0 for no watchdog), or nil, 0 and no error
// when systemd asked for no notifications. An error names the variable
// that cannot be used, and leaves no socket open: left unpinged or
// unready, systemd would kill the service, so the caller should not start.
func Open() (*Notifier, time.Duration, error) {
	n, err := NewNotifier()
	if err != nil || n == nil {
		return nil, 0, err
	}
	interval, err := WatchdogInterval()
	if err != nil {
		n.Close()
		return nil, 0, err
	}
	return n, interval, nil
}
