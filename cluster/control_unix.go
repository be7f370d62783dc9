//go:build linux || darwin

package cluster

import (
	"os"
	"syscall"
)

// fileUID returns the uid that owns the file info describes.
func fileUID(info os.FileInfo) (int, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
