// Package listenaddr opens the listening addresses that cluster.Config.Listen
// and memdrain run's --listen accept: "host:port" for TCP, "unix:/path" for
// a unix socket.
package listenaddr

import (
	"net"
	"os"
	"strings"
)

// UnixPrefix marks a unix socket address.
const UnixPrefix = "unix:"

// Listen opens addr. A unix socket file left by a process that died is
// removed first, but never one that a live process still accepts on: that
// one makes Listen fail with "address already in use".
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		removeStaleSocket(path)
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

func removeStaleSocket(path string) {
	info, err := os.Stat(path)
	if err != nil || info.Mode()&os.ModeSocket == 0 {
		return
	}
	if conn, err := net.Dial("unix", path); err == nil {
		conn.Close()
		return
	}
	os.Remove(path)
}
