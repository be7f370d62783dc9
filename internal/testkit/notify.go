package testkit

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A NotifySocket is a unixgram socket standing in for systemd's
// NOTIFY_SOCKET: name Path in the variable, and read what arrives with
// WaitFor. It is closed when the test ends.
type NotifySocket struct {
	Path string
	Seen []string // every message taken so far, in order

	t    *testing.T
	msgs chan string
}

// notifyWait bounds WaitFor: a safety net, not a measurement.
const notifyWait = 60 * time.Second

// NewNotifySocket listens on a unixgram socket in the test's temporary
// directory.
func NewNotifySocket(t *testing.T) *NotifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &NotifySocket{Path: path, t: t, msgs: make(chan string, 1000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case n.msgs <- string(buf[:k]):
			default: // the test stopped reading; the sender must not care
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return n
}

// WaitFor returns the next message with the line field (such as
// "READY=1"), adding every message it takes to Seen. It fails the test
// when none comes within a minute.
func (n *NotifySocket) WaitFor(field string) string {
	n.t.Helper()
	deadline := time.After(notifyWait)
	for {
		select {
		case msg := <-n.msgs:
			n.Seen = append(n.Seen, msg)
			if HasField(msg, field) {
				return msg
			}
		case <-deadline:
			n.t.Fatalf("no %s within %v; got %q", field, notifyWait, n.Seen)
		}
	}
}

// TakeArrived adds the messages that have arrived and were not yet taken
// to Seen: once the sender has exited, they are all it sent.
func (n *NotifySocket) TakeArrived() {
	for len(n.msgs) > 0 {
		n.Seen = append(n.Seen, <-n.msgs)
	}
}

// Lifecycle returns the READY, RELOADING and STOPPING lines of Seen, in
// order.
func (n *NotifySocket) Lifecycle() []string {
	var out []string
	for _, msg := range n.Seen {
		for _, f := range []string{"READY=1", "RELOADING=1", "STOPPING=1"} {
			if HasField(msg, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// HasField reports whether the notification msg has the line field.
func HasField(msg, field string) bool {
	for _, line := range strings.Split(msg, "\n") {
		if line == field {
			return true
		}
	}
	return false
}
