package cluster

import "syscall"

// workerSysProcAttr puts a worker in its own process group, so a Ctrl-C in
// the terminal reaches only the master (which drains the workers), and asks
// the kernel to send it SIGTERM if the master dies, so it drains and exits
// instead of living on as an orphan.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
