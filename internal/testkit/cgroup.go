package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A MemoryCgroup is a child of this process's own memory cgroup, created
// for one test and removed at its end.
type MemoryCgroup struct {
	Dir      string
	Version  string // "cgroup v1" or "cgroup v2", as memory.FindContainerLimit's source starts
	PeakFile string // the highest usage so far
	OOMFile  string // holds "oom_kill N", the processes the kernel killed in it
}

// Procs is the file a process's pid is written to, to move it into the
// cgroup.
func (cg *MemoryCgroup) Procs() string { return filepath.Join(cg.Dir, "cgroup.procs") }

// NewMemoryCgroup creates a memory cgroup with the given limit under this
// process's own, under cgroup v2 where that can be written, else under v1,
// and removes it when the test ends (cleanups registered after this one,
// such as those that kill the processes started in it, run first). It skips the test, saying why, when
// neither can be.
func NewMemoryCgroup(t *testing.T, limit uint64) *MemoryCgroup {
	t.Helper()
	procCgroup, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no memory cgroup to create: %v", err)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no memory cgroup to create: %v", err)
	}
	name := fmt.Sprintf("memdrain-test-%d", os.Getpid())
	var why []string
	for _, v := range []struct {
		version, fsType, controller, limitFile, peakFile, oomFile string
	}{
		{"cgroup v2", "cgroup2", "", "memory.max", "memory.peak", "memory.events"},
		{"cgroup v1", "cgroup", "memory", "memory.limit_in_bytes", "memory.max_usage_in_bytes", "memory.oom_control"},
	} {
		parent, ok := cgroupDir(string(procCgroup), string(mountinfo), v.fsType, v.controller)
		if !ok {
			why = append(why, v.version+": not mounted for this process")
			continue
		}
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", v.version, err))
			continue
		}
		t.Cleanup(func() {
			// Runs after the cleanups that kill what the test started in
			// it; their children may still be on their way out.
			if err := endProcesses(filepath.Join(dir, "cgroup.procs")); err != nil {
				t.Errorf("ending the processes in the test's cgroup: %v", err)
			}
			if err := os.Remove(dir); err != nil {
				t.Errorf("removing the test's cgroup: %v", err)
			}
		})
		if err := os.WriteFile(filepath.Join(dir, v.limitFile), []byte(fmt.Sprint(limit)), 0); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", v.version, err))
			continue
		}
		if v.version == "cgroup v1" {
			// Without swap for the cgroup, the limit is reached as it is
			// in a container, not pushed into swap.
			os.WriteFile(filepath.Join(dir, "memory.swappiness"), []byte("0"), 0)
		}
		return &MemoryCgroup{Dir: dir, Version: v.version, PeakFile: filepath.Join(dir, v.peakFile), OOMFile: filepath.Join(dir, v.oomFile)}
	}
	t.Skipf("no writable memory cgroup: %s", strings.Join(why, "; "))
	return nil
}

// Read returns one of the cgroup's files, trimmed.
func (cg *MemoryCgroup) Read(t testing.TB, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the test's cgroup: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// cgroupDir returns the directory of this process's cgroup in the
// hierarchy of fsType ("cgroup2", or "cgroup" with controller), from
// /proc/self/cgroup and /proc/self/mountinfo, when that hierarchy is
// mounted at its root.
func cgroupDir(procCgroup, mountinfo, fsType, controller string) (string, bool) {
	var cgPath string
	found := false
	for _, line := range strings.Split(procCgroup, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if controller == "" && f[0] == "0" && f[1] == "" || controller != "" && hasItem(f[1], controller) {
			cgPath, found = f[2], true
			break
		}
	}
	if !found {
		return "", false
	}
	for _, line := range strings.Split(mountinfo, "\n") {
		before, after, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		m, fs := strings.Fields(before), strings.Fields(after)
		if len(m) < 5 || len(fs) < 3 || fs[0] != fsType || m[3] != "/" {
			continue
		}
		if controller != "" && !hasItem(fs[2], controller) {
			continue
		}
		return filepath.Join(m[4], cgPath), true
	}
	return "", false
}

func hasItem(list, item string) bool {
	for _, s := range strings.Split(list, ",") {
		if s == item {
			return true
		}
	}
	return false
}
