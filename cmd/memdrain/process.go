//go:build linux

package main

import (
	"net"
	"syscall"
	"unsafe"
)

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitExited blocks until process pid has exited, without reaping it.
func waitExited(pid int) {
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(pid), uintptr(unsafe.Pointer(&info)),
			syscall.WEXITED|0x01000000 /* WNOWAIT */, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}
