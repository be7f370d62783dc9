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
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: socketpair: %w", err)
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
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
