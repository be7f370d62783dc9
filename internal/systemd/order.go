//go:build linux || darwin

package systemd

import (
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/memdrain/memdrain/internal/listenaddr"
)

// Listeners returns the sockets systemd passed (socket activation),
// ordered as the listen addresses ask, or nil when none were passed. field
// names the addresses in errors ("cluster: Config.Listen", "memdrain:
// --listen").
//
// With no addresses, every passed socket is used in the order passed.
// With addresses, each one takes the passed socket whose
// FileDescriptorName equals it, else the one listening on that address
// ("127.0.0.1:8080" or "unix:/run/x.sock"). If some address matches none,
// the sockets left are taken in order, provided as many remain as
// addresses; a count that differs is an error naming both.
func Listeners(listen []string, field string, log *slog.Logger) ([]net.Listener, error) {
	sockets, err := Activated()
	if err != nil || len(sockets) == 0 {
		return nil, err
	}
	return orderSockets(listen, field, sockets, log)
}

// orderSockets orders sockets as listen asks (see activatedListeners). On
// an error it closes them all.
func orderSockets(listen []string, field string, sockets []Socket, log *slog.Logger) ([]net.Listener, error) {
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
		return nil, fmt.Errorf("%s %q names %d addresses but systemd passed %d sockets (%s); accepted: one address for each passed socket, or none to use them all",
			field, listen, len(listen), len(sockets), describeSockets(sockets))
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
				log.Warn("no socket passed by systemd is named or bound as this listen address; using the next one in order",
					"listen", addr, "socket", sockets[j].Listener.Addr().String(), "name", sockets[j].Name)
				break
			}
		}
	}
	return lns, nil
}

// matchSocket returns the index of the untaken socket named addr, else of
// the one bound to addr, else -1.
func matchSocket(addr string, sockets []Socket, taken []bool) int {
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

func describeSockets(sockets []Socket) string {
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
