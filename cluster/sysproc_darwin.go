package cluster

import "syscall"

// workerSysProcAttr puts a worker in its own process group, so a Ctrl-C in
// the terminal reaches only the master. macOS has no parent-death signal:
// the worker notices the end of its control socket instead.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
