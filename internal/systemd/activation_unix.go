//go:build linux || darwin

package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenFdsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFdsStart = 3

// Activated returns the listening sockets systemd passed to this process,
// in order, and unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, so that
// the sockets are taken once and no child process believes they are its
// own (as sd_listen_fds(1) does). It returns nil when LISTEN_PID is unset
// or names another process (the variables are then left alone). Each
// descriptor is marked close-on-exec and becomes a net.Listener; one that
// is not a stream socket listening (a datagram socket, or a connection
// from Accept=yes) is an error naming it, and every listener is closed.
func Activated() ([]Socket, error) {
	pidVar, ok := os.LookupEnv(ListenPidEnv)
	if !ok {
		return nil, nil
	}
	if pid, err := strconv.Atoi(pidVar); err != nil || pid != os.Getpid() {
		return nil, nil
	}
	fdsVar, namesVar := os.Getenv(ListenFdsEnv), os.Getenv(ListenFdnamesEnv)
	for _, v := range []string{ListenPidEnv, ListenFdsEnv, ListenFdnamesEnv} {
		os.Unsetenv(v)
	}
	n, err := strconv.Atoi(fdsVar)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("systemd: %s=%q: accepted: the number of descriptors passed from 3 onward", ListenFdsEnv, fdsVar)
	}
	var names []string
	if namesVar != "" {
		names = strings.Split(namesVar, ":")
	}
	sockets := make([]Socket, 0, n)
	for i := range n {
		fd := listenFdsStart + i
		syscall.CloseOnExec(fd)
		s := Socket{}
		if i < len(names) {
			s.Name = names[i]
		}
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		ln, err := net.FileListener(f) // a duplicate: f is closed below
		f.Close()
		if err == nil {
			if _, ok := ln.(syscall.Conn); !ok {
				ln.Close()
				err = fmt.Errorf("a %T", ln)
			}
		}
		if err != nil {
			for _, s := range sockets {
				s.Listener.Close()
			}
			return nil, fmt.Errorf("systemd: passed descriptor %d (%s %d of %s=%d, name %q) is not a listening stream socket (%v); accepted: ListenStream= sockets with Accept=no",
				fd, "socket", i+1, ListenFdsEnv, n, s.Name, err)
		}
		s.Listener = ln
		sockets = append(sockets, s)
	}
	return sockets, nil
}
