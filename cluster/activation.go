package cluster

import (
	"log/slog"
	"net"

	"github.com/memdrain/memdrain/internal/systemd"
)

// activatedListeners returns the sockets systemd passed, ordered as
// Config.Listen asks (see systemd.Listeners), or nil when none were passed.
// The precedence is Listeners, then the passed sockets, then Listen: under
// systemd the socket unit says where the service listens.
func activatedListeners(listen []string, log *slog.Logger) ([]net.Listener, error) {
	return systemd.Listeners(listen, "cluster: Config.Listen", log)
}

// workerEnviron is the master's environment without systemd's variables:
// notifications and the passed sockets are the master's, and a worker
// that took LISTEN_FDS for its own would read the control socket at fd 3
// as a listener.
func workerEnviron() []string { return systemd.Environ() }
