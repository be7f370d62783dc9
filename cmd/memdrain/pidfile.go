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

// writePidFile writes this process's pid to path, and returns the function
// that removes the file if it still holds that pid. A file naming another
// process that still runs is refused: two masters would share the file, and
// whichever stopped first would remove the other's. A file naming a process
// that is gone is replaced. The file is written whole under a temporary
// name and renamed, so a reader never sees it half written.
func writePidFile(path string) (remove func(), err error) {
	if old, err := readPidFile(path); err == nil && old != os.Getpid() && processRuns(old) {
		return nil, fmt.Errorf("--pid-file %s: process %d, which it names, still runs: stop that memdrain first, or choose another file (remove this one if %d is not memdrain)", path, old, old)
	}
	pid := strconv.Itoa(os.Getpid())
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // its path is the temporary file's, which the user never named
		}
		return nil, fmt.Errorf("--pid-file %s: cannot write in %s: %w", path, dir, err)
	}
	_, werr := tmp.WriteString(pid + "\n")
	if err := errors.Join(werr, tmp.Chmod(0o644), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("--pid-file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("--pid-file %s: %w", path, err)
	}
	return func() {
		if now, err := readPidFile(path); err == nil && now == os.Getpid() {
			os.Remove(path)
		}
	}, nil
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

// processRuns reports whether a process with this pid exists. EPERM means
// it exists and belongs to another user.
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
