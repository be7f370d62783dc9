//go:build linux || darwin

package cluster

import (
	"net"
	"os"
	"syscall"
)

// sendConn sends one connection over a hand-off socket. The file stays the
// caller's to close.
func sendConn(conn *net.UnixConn, pc passedConn) error {
	_, _, err := conn.WriteMsgUnix(pc.payload, syscall.UnixRights(int(pc.file.Fd())), nil)
	return err
}

// receiveConn receives one connection. A datagram without a descriptor is
// skipped.
func receiveConn(conn *net.UnixConn) (passedConn, error) {
	payload := make([]byte, maxHandoffPayload)
	oob := make([]byte, syscall.CmsgSpace(4))
	for {
		n, oobn, flags, _, err := conn.ReadMsgUnix(payload, oob)
		if err != nil {
			return passedConn{}, err
		}
		file := unixRights(oob[:oobn])
		// A cut payload would hand the next worker half a request: the
		// connection is closed instead. Nothing sends one.
		if file == nil || n == 0 || flags&syscall.MSG_TRUNC != 0 {
			if file != nil {
				file.Close()
			}
			continue
		}
		return passedConn{file: file, payload: payload[:n]}, nil
	}
}

// unixRights returns the one descriptor in a control message, or nil.
func unixRights(oob []byte) *os.File {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil
	}
	syscall.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "memdrain-passed-conn")
}

// receiveQueued returns the connections already queued on a hand-off
// socket, without waiting for more.
func receiveQueued(conn *net.UnixConn) []passedConn {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	var queued []passedConn
	for {
		payload := make([]byte, maxHandoffPayload)
		oob := make([]byte, syscall.CmsgSpace(4))
		var n, oobn int
		var recvErr error
		err := raw.Read(func(fd uintptr) bool {
			var flags int
			n, oobn, flags, _, recvErr = syscall.Recvmsg(int(fd), payload, oob, syscall.MSG_DONTWAIT)
			if recvErr == nil && flags&syscall.MSG_TRUNC != 0 {
				n = 0 // dropped below, as in receiveConn
			}
			return true // never wait
		})
		if err != nil || recvErr != nil {
			return queued
		}
		if file := unixRights(oob[:oobn]); file != nil {
			if n == 0 {
				file.Close()
				continue
			}
			queued = append(queued, passedConn{file: file, payload: payload[:n]})
		}
	}
}
