package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/memdrain/memdrain/internal/listenaddr"
	"github.com/memdrain/memdrain/internal/systemd"
)

// activatedListeners returns the sockets systemd passed (socket
// activation), ordered as Config.Listen asks, or nil when none were
// passed. The precedence is Listeners, then the passed sockets, then
// Listen: under systemd the socket unit says where the service listens.
//
// With Listen not given, every passed socket is used in the order passed.
// With Listen given, each address takes the passed socket whose
// FileDescriptorName equals it, else the one listening on that address
// ("127.0.0.1:8080" or "unix:/run/x.sock"). If some address matches none,
// the sockets left are taken in order, provided as many remain as
// addresses; a count that differs is an error naming both.
func activatedListeners(listen []string, log *slog.Logger) ([]net.Listener, error) {
	sockets, err := systemd.Activated()
	if err != nil || len(sockets) == 0 {
		return nil, err
	}
	return orderSockets(listen, sockets, log)
}

// orderSockets orders sockets as listen asks (see activatedListeners). On
// an error it closes them all.
func orderSockets(listen []string, sockets []systemd.Socket, log *slog.Logger) ([]net.Listener, error) {
	if len(listen) == 0 {
		lns := make([]net.Listener, len(sockets))
		for i, s := range sockets {
			lns[i] = s.Listener
		}
		return lns, nil
	}
	if len(listen) != len(sockets) {
		for _, s := range sockets {
			s.Listener.Close()
		}
		return nil, fmt.Errorf("cluster: Config.Listen %q names %d addresses but systemd passed %d sockets (%s); accepted: one address for each passed socket, or Listen empty to use them all",
			listen, len(listen), len(sockets), describeSockets(sockets))
	}
	taken := make([]bool, len(sockets))
	lns := make([]net.Listener, len(listen))
	for i, addr := range listen {
		if j := matchSocket(addr, sockets, taken); j >= 0 {
			taken[j], lns[i] = true, sockets[j].Listener
		}
	}
	for i, addr := range listen {
		if lns[i] != nil {
			continue
		}
		for j := range sockets {
			if !taken[j] {
				taken[j], lns[i] = true, sockets[j].Listener
				log.Warn("no socket passed by systemd is named or bound as a Listen address; using the next one in order",
					"listen", addr, "socket", sockets[j].Listener.Addr().String(), "name", sockets[j].Name)
				break
			}
		}
	}
	return lns, nil
}

// matchSocket returns the index of the untaken socket named addr, else of
// the one bound to addr, else -1.
func matchSocket(addr string, sockets []systemd.Socket, taken []bool) int {
	for j, s := range sockets {
		if !taken[j] && s.Name != "" && s.Name == addr {
			return j
		}
	}
	for j, s := range sockets {
		if !taken[j] && boundTo(s.Listener.Addr(), addr) {
			return j
		}
	}
	return -1
}

// boundTo reports whether a listener at got serves the Listen address want.
func boundTo(got net.Addr, want string) bool {
	if path, ok := strings.CutPrefix(want, listenaddr.UnixPrefix); ok {
		return got.Network() == "unix" && got.String() == path
	}
	tcp, ok := got.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(want)
	if err != nil || port != fmt.Sprint(tcp.Port) {
		return false
	}
	if host == "" {
		return tcp.IP.IsUnspecified()
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.Equal(tcp.IP)
}

func describeSockets(sockets []systemd.Socket) string {
	var b strings.Builder
	for i, s := range sockets {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.Listener.Addr().String())
		if s.Name != "" {
			fmt.Fprintf(&b, " named %q", s.Name)
		}
	}
	return b.String()
}

// workerEnviron is the master's environment without systemd's variables:
// notifications and the passed sockets are the master's, and a worker
// that took LISTEN_FDS for its own would read the control socket at fd 3
// as a listener.
func workerEnviron() []string { return systemd.Environ() }
