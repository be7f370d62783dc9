//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkPidFile accepts the path of a file.
func checkPidFile(v string) (string, bool) {
	if strings.TrimSpace(v) == "" || strings.HasSuffix(v, "/") {
		return fmt.Sprintf("accepted: the path of a file, such as /run/app/memdrain.pid; %q is not", v), false
	}
	return "", true
}

// controlBesidePidFile is the control socket's default under --pid-file:
// the same path with .sock for .pid (or .sock added).
func controlBesidePidFile(pidFile string) string {
	return strings.TrimSuffix(pidFile, ".pid") + ".sock"
}

// A pidFile is memdrain's --pid-file, holding its pid and locked (flock)
// for as long as it runs. The lock, not the pid, says whether a memdrain
// runs with the file: after a crash the file stays, naming a pid that
// another process may have taken since, and the next memdrain takes it
// over.
type pidFile struct {
	path string
	f    *os.File // open, close-on-exec, and locked
}

// lockPidFile opens or creates the file at path, locks it and writes this
// process's pid in it. A file another memdrain has locked is refused,
// naming that memdrain's pid.
func lockPidFile(path string) (*pidFile, error) {
	for range 3 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("--pid-file %s: the directory %s does not exist; create it first (under systemd: RuntimeDirectory=)", path, filepath.Dir(path))
		}
		if err != nil {
			return nil, fmt.Errorf("--pid-file %s: %w", path, pathless(err))
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				holder := "another memdrain"
				if pid, err := readPidFile(path); err == nil {
					holder = fmt.Sprintf("memdrain %d", pid)
				}
				return nil, fmt.Errorf("--pid-file %s: %s runs with it; stop it first, or choose another file", path, holder)
			}
			return nil, fmt.Errorf("--pid-file %s: locking it: %w", path, err)
		}
		// The memdrain that held the lock removes the file as it stops: if
		// that came between open and lock, this lock is on a file nobody
		// finds any more, and the path is opened again.
		if opened, err := f.Stat(); err == nil {
			if now, err := os.Stat(path); err == nil && os.SameFile(opened, now) {
				pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
				if err := f.Truncate(0); err != nil {
					f.Close()
					return nil, fmt.Errorf("--pid-file %s: %w", path, pathless(err))
				}
				if _, err := f.WriteAt(pid, 0); err != nil {
					f.Close()
					return nil, fmt.Errorf("--pid-file %s: %w", path, pathless(err))
				}
				return &pidFile{path: path, f: f}, nil
			}
		}
		f.Close()
	}
	return nil, fmt.Errorf("--pid-file %s: the file kept being replaced while memdrain locked it", path)
}

// remove removes the file, then lets its lock go: in that order, no other
// memdrain can lock the file this one removes.
func (p *pidFile) remove() {
	os.Remove(p.path)
	p.f.Close()
}

// readPidFile returns the pid in the file at path.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds no pid", path)
	}
	return pid, nil
}

// pathless drops the path from a *fs.PathError, which the caller's message
// already names.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
