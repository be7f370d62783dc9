// Package systemd speaks the two protocols a daemon shares with systemd:
// sd_notify (readiness, reloads, stopping, status and the watchdog, as
// datagrams to NOTIFY_SOCKET) and socket activation (listening sockets
// passed as descriptors 3 onward, described by LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES). Both are small and stable (systemd's sd_notify(3) and
// sd_listen_fds(3)); they are written here rather than taken from
// github.com/coreos/go-systemd/v22, whose module graph brings
// github.com/godbus/dbus/v5, and whose SdNotify dials a socket per message
// and writes with a blocking Write: a full socket buffer would stall the
// caller, and the caller here is the supervisor's loop.
package systemd
