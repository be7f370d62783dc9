package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// The variables systemd sets for the sd_notify protocol.
const (
	NotifySocketEnv = "NOTIFY_SOCKET"
	WatchdogUsecEnv = "WATCHDOG_USEC"
	WatchdogPidEnv  = "WATCHDOG_PID"
)

// The variables systemd sets for socket activation.
const (
	ListenPidEnv     = "LISTEN_PID"
	ListenFdsEnv     = "LISTEN_FDS"
	ListenFdnamesEnv = "LISTEN_FDNAMES"
)

// A Socket is one listening socket passed by systemd.
type Socket struct {
	// Name is its LISTEN_FDNAMES entry (FileDescriptorName= in the socket
	// unit, by default the unit's name), or "" when none was given.
	Name     string
	Listener net.Listener
}

// Env lists every variable of both protocols, for a supervisor to keep
// from its children: they belong to the process systemd started.
var Env = []string{NotifySocketEnv, WatchdogUsecEnv, WatchdogPidEnv, ListenPidEnv, ListenFdsEnv, ListenFdnamesEnv}

// WatchdogInterval returns how often to send "WATCHDOG=1": half of
// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises. It returns 0 when
// WATCHDOG_USEC is unset, or when WATCHDOG_PID names another process (the
// watchdog is then that process's duty). A value that is not a positive
// number of microseconds is an error naming it.
func WatchdogInterval() (time.Duration, error) {
	v := os.Getenv(WatchdogUsecEnv)
	if v == "" {
		return 0, nil
	}
	usec, err := strconv.ParseUint(v, 10, 63)
	if err != nil || usec == 0 {
		return 0, fmt.Errorf("systemd: %s=%q: accepted: a positive number of microseconds", WatchdogUsecEnv, v)
	}
	if p := os.Getenv(WatchdogPidEnv); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("systemd: %s=%q: accepted: a process id", WatchdogPidEnv, p)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	return time.Duration(usec/2) * time.Microsecond, nil
}
