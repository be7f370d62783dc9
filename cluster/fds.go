//go:build linux || darwin

package cluster

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/memdrain/memdrain/internal/connpass"
)

// socketPair returns the master's end as a connection and the worker's end
// as a file for exec.Cmd.ExtraFiles. kind is syscall.SOCK_STREAM (the
// control channel) or syscall.SOCK_DGRAM (hand-offs).
func socketPair(kind int) (net.Conn, *os.File, error) {
	fds, err := socketpairCloexec(kind)
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

// listenerFile returns a duplicate of ln's descriptor to hand to workers,
// in the mode the master's own listener has (see connpass.Dup).
func listenerFile(ln net.Listener) (*os.File, error) {
	if _, ok := ln.(syscall.Conn); !ok {
		return nil, fmt.Errorf("a %T cannot be shared with worker processes; accepted: *net.TCPListener, *net.UnixListener", ln)
	}
	return connpass.Dup(ln)
}
