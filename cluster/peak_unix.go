//go:build linux || darwin

package cluster

import (
	"os"
	"runtime"
	"syscall"
)

// peakRSS returns the highest resident set size an exited process reached
// in its life, from the kernel's accounting (getrusage's ru_maxrss, which
// wait4 returns), or 0 if unknown. Unlike a sample, it misses no peak: a
// worker that grows while it drains reaches its highest memory right
// before it exits, after the master's last look at it.
func peakRSS(ps *os.ProcessState) uint64 {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru.Maxrss <= 0 {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return uint64(ru.Maxrss) // bytes there
	}
	return uint64(ru.Maxrss) << 10 // KiB on Linux
}
