package standalone

import (
	"fmt"
	"net"
	"net/http"

	"github.com/memdrain/memdrain/internal/systemd"
)

// listener returns what ListenAndServe serves: opts.Listener, else the one
// socket systemd passed, else a new listener on srv.Addr.
func listener(srv *http.Server, opts Options) (net.Listener, error) {
	if opts.Listener != nil {
		return opts.Listener, nil
	}
	sockets, err := systemd.Activated()
	if err != nil {
		return nil, fmt.Errorf("standalone: %w", err)
	}
	switch len(sockets) {
	case 0:
	case 1:
		return sockets[0].Listener, nil
	default:
		addrs := make([]string, len(sockets))
		for i, s := range sockets {
			addrs[i] = s.Listener.Addr().String()
			s.Listener.Close()
		}
		return nil, fmt.Errorf("standalone: systemd passed %d sockets (%s, LISTEN_FDS=%d); accepted: one, as ListenAndServe serves one server on one socket (pass the one to serve as Options.Listener)",
			len(sockets), addrs, len(sockets))
	}
	addr := srv.Addr
	if addr == "" {
		addr = ":http"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("standalone: listening on %s: %w", addr, err)
	}
	return ln, nil
}
