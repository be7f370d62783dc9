package cluster

import "syscall"

// socketpairCloexec makes a pair of Unix sockets, close-on-exec from the
// start (SOCK_CLOEXEC), so that no process started elsewhere in the
// program inherits a worker's control socket (the worker would then never
// see the end of it when the master dies). It takes no ForkLock: the loop
// prepares a worker while another one forks, and a reader of ForkLock
// waits behind the fork's writer, up to the fork's end (hundreds of
// milliseconds on a loaded machine).
func socketpairCloexec(kind int) ([2]int, error) {
	return syscall.Socketpair(syscall.AF_UNIX, kind|syscall.SOCK_CLOEXEC, 0)
}
