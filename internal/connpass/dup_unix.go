//go:build linux || darwin

package connpass

import (
	"fmt"
	"os"
	"syscall"
)

// Dup returns a duplicate of the descriptor of conn (a connection or a
// listener), close-on-exec, leaving conn as it is.
//
// It must not come from a File method: os/exec calls Fd on every
// ExtraFiles entry, and Fd switches a File made by net to blocking mode.
// O_NONBLOCK belongs to the open file description, which every duplicate
// shares, so the original would turn blocking under its server: a blocking
// accept or read cannot be interrupted by a close or a deadline. A File
// from os.NewFile on a plain duplicate leaves the mode alone.
func Dup(conn any) (*os.File, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("a %T has no descriptor to pass", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var dup int
	var dupErr error
	err = raw.Control(func(fd uintptr) {
		syscall.ForkLock.RLock() // no fork may inherit it before it is close-on-exec
		defer syscall.ForkLock.RUnlock()
		if dup, dupErr = syscall.Dup(int(fd)); dupErr == nil {
			syscall.CloseOnExec(dup)
		}
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return nil, fmt.Errorf("duplicating a descriptor: %w", err)
	}
	return os.NewFile(uintptr(dup), "memdrain-dup"), nil
}
