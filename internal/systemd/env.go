package systemd

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
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

// vars lists every variable of both protocols.
var vars = []string{NotifySocketEnv, WatchdogUsecEnv, WatchdogPidEnv, ListenPidEnv, ListenFdsEnv, ListenFdnamesEnv}

// Environ returns os.Environ() without the variables of either protocol,
// for a supervisor's children: notifications, the watchdog and the passed
// sockets belong to the process systemd started, and a child that took
// LISTEN_FDS for its own would take whatever it has at fd 3 for a
// listener.
func Environ() []string {
	env := os.Environ()
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(vars, name) {
			out = append(out, kv)
		}
	}
	return out
}

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
