package testkit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// endProcesses kills every process listed in procs (a cgroup.procs, of a
// cgroup only a test's processes are in) and waits for each to exit, which
// takes it out of the cgroup. A pidfd names the process itself, so a pid
// reused meanwhile is never signalled. Killed processes' children may join
// the list meanwhile: it is read again, a few times.
func endProcesses(procs string) error {
	for range 5 {
		b, err := os.ReadFile(procs)
		if err != nil {
			return err
		}
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			pid, err := strconv.Atoi(p)
			if err != nil {
				return fmt.Errorf("%s: %q is not a pid", procs, p)
			}
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue // gone already
			}
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			// The pidfd turns readable when the process exits.
			_, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 10_000)
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("waiting for pid %d to exit: %w", pid, err)
			}
		}
	}
	return errors.New("processes kept starting in it")
}
