//go:build !linux && !darwin

package systemd

import (
	"log/slog"
	"net"
)

// Elsewhere there is no systemd: nothing is sent and nothing was passed.

// A Notifier sends nothing on this system.
type Notifier struct{}

// NewNotifier returns nil: there is no systemd here.
func NewNotifier() (*Notifier, error) { return nil, nil }

// Send does nothing.
func (n *Notifier) Send(string) error { return nil }

// Tell does nothing.
func (n *Notifier) Tell(string, *slog.Logger) {}

// Close does nothing.
func (n *Notifier) Close() error { return nil }

// MonotonicUsec returns "".
func MonotonicUsec() string { return "" }

// Activated returns nil: no socket is passed here.
func Activated() ([]Socket, error) { return nil, nil }

// IsFull reports false.
func IsFull(error) bool { return false }

// Listeners returns nil: no systemd passes sockets here.
func Listeners([]string, string, *slog.Logger) ([]net.Listener, error) { return nil, nil }
