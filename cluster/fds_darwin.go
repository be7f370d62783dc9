package cluster

import "syscall"

// socketpairCloexec makes a pair of Unix sockets, close-on-exec, under
// ForkLock, so that no process started elsewhere in the program inherits a
// worker's control socket before it is close-on-exec (the worker would
// then never see the end of it when the master dies). macOS has no
// SOCK_CLOEXEC; the loop may then wait here while another worker forks.
func socketpairCloexec(kind int) ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, kind, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	return fds, err
}
