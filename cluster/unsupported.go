//go:build !linux && !darwin

package cluster

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// New refuses to build a Cluster here; these stand-ins only let the package
// compile, so a program can fall back to package drain.
var errUnsupported = errors.New("cluster: not supported on this system")

func socketPair(int) (net.Conn, *os.File, error) { return nil, nil, errUnsupported }

func sendConn(*net.UnixConn, passedConn) error { return errUnsupported }

func receiveQueued(*net.UnixConn) []passedConn { return nil }

func receiveConn(*net.UnixConn) (passedConn, error) { return passedConn{}, errUnsupported }

func workerSysProcAttr() *syscall.SysProcAttr { return nil }

func listenerFile(net.Listener) (*os.File, error) { return nil, errUnsupported }

func peakRSS(*os.ProcessState) uint64 { return 0 }

func fileUID(os.FileInfo) (int, bool) { return 0, false }

func peerUID(*net.UnixConn) (uid int, ok bool, err error) { return 0, false, errUnsupported }
