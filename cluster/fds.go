//go:build linux || darwin

package cluster

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// socketPair returns the master's end as a connection and the worker's end
// as a file for exec.Cmd.ExtraFiles.
func socketPair() (net.Conn, *os.File, error) {
	// Under ForkLock, so that no process started elsewhere in the program
	// inherits a worker's control socket before it is close-on-exec (the
	// worker would then never see the end of it when the master dies).
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: socketpair: %w", err)
	}
	masterFile := os.NewFile(uintptr(fds[0]), "memdrain-master")
	workerFile := os.NewFile(uintptr(fds[1]), "memdrain-worker")
	conn, err := net.FileConn(masterFile)
	masterFile.Close() // FileConn holds its own duplicate
	if err != nil {
		workerFile.Close()
		return nil, nil, fmt.Errorf("cluster: socketpair: %w", err)
	}
	return conn, workerFile, nil
}

// listenerFile returns a duplicate of ln's descriptor to hand to workers.
//
// It must not come from the listener's File method: os/exec calls Fd on
// every ExtraFiles entry, and Fd switches a File made by net to blocking
// mode. O_NONBLOCK belongs to the open file description, which the master
// and every worker share, so each spawn would turn the shared socket
// blocking under the running workers. A worker then accepting in a blocking
// system call can never close its listener, and its drain hangs. A File
// from os.NewFile on a plain duplicate leaves the mode alone.
func listenerFile(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("a %T cannot be shared with worker processes; accepted: *net.TCPListener, *net.UnixListener", ln)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var dup int
	var dupErr error
	err = raw.Control(func(fd uintptr) {
		syscall.ForkLock.RLock() // no fork may inherit the duplicate before it is close-on-exec
		defer syscall.ForkLock.RUnlock()
		if dup, dupErr = syscall.Dup(int(fd)); dupErr == nil {
			syscall.CloseOnExec(dup)
		}
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return nil, fmt.Errorf("duplicating the listening socket: %w", err)
	}
	return os.NewFile(uintptr(dup), "memdrain-listener"), nil
}
