//go:build linux || darwin

package systemd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// A Notifier sends sd_notify messages ("READY=1", "STATUS=...") to the
// socket named by NOTIFY_SOCKET. A nil *Notifier sends nothing, so callers
// need not check whether systemd listens.
type Notifier struct {
	fd     int // an unbound datagram socket, close-on-exec
	addr   *syscall.SockaddrUnix
	failed error // the last Tell's failure, nil after one that worked
}

// NewNotifier returns a Notifier for the socket in NOTIFY_SOCKET, or nil
// and no error when the variable is unset or empty (the process does not
// run under a systemd that asked for notifications). A path starting with
// "@" names a socket in Linux's abstract namespace, as in systemd.
// NewNotifier leaves the variable set: the caller decides what its children
// see.
func NewNotifier() (*Notifier, error) {
	path := os.Getenv(NotifySocketEnv)
	if path == "" {
		return nil, nil
	}
	if path[0] != '/' && path[0] != '@' {
		return nil, fmt.Errorf("systemd: %s=%q: accepted: an absolute path, or @name for an abstract socket", NotifySocketEnv, path)
	}
	// ForkLock keeps a process started meanwhile from inheriting the
	// socket before it is marked close-on-exec (darwin has no SOCK_CLOEXEC).
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("systemd: a socket to send to %s: %w", NotifySocketEnv, err)
	}
	return &Notifier{fd: fd, addr: &syscall.SockaddrUnix{Name: path}}, nil
}

// Send sends one message, such as "READY=1\nSTATUS=serving". It never
// waits: when the socket's buffer is full (systemd not reading), the
// message is dropped and Send returns the error (EAGAIN). It is safe to
// call from one goroutine at a time.
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	return syscall.Sendto(n.fd, []byte(state), syscall.MSG_DONTWAIT, n.addr)
}

// Tell sends msg as Send does, and logs the first failure of a run of
// them: a message systemd cannot take is dropped, never waited for, and a
// socket that stays full is logged once. Like Send, it is for one
// goroutine at a time.
func (n *Notifier) Tell(msg string, log *slog.Logger) {
	if n == nil {
		return
	}
	err := n.Send(msg)
	if err != nil && n.failed == nil {
		log.Warn("telling systemd failed; the message is dropped", "message", msg, "err", err)
	}
	n.failed = err
}

// Close releases the Notifier's socket.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	return syscall.Close(n.fd)
}

// MonotonicUsec returns "MONOTONIC_USEC=" and CLOCK_MONOTONIC in
// microseconds, which systemd 253 and later want beside RELOADING=1 (for
// Type=notify-reload), so that it can tell this reload from an older one.
func MonotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "" // not on this system: systemd then goes without it
	}
	return "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1e3, 10)
}

// IsFull reports whether err from Send says the socket's buffer was full.
func IsFull(err error) bool { return errors.Is(err, syscall.EAGAIN) }
