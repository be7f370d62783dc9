package memory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v4/mem"
)

// AvailableMemory returns the memory, in bytes, that this process may use,
// and where that number came from.
//
// On Linux that is the smallest memory limit of the process's cgroup and of
// every cgroup above it: memory.max under cgroup v2, memory.limit_in_bytes
// under cgroup v1 (also when, in a hybrid layout, a cgroup v2 hierarchy is
// mounted beside it, since the memory controller then lives in v1). A v2
// limit of "max", or a v1 limit of 2^62 bytes or more (the kernel reports
// 9223372036854771712 for none), is no limit. The cgroup file systems are
// found through /proc/self/mountinfo, wherever they are mounted. The source
// names the file that set the limit, as in
// "cgroup v2 /sys/fs/cgroup/app.slice/memory.max".
//
// Without a cgroup limit, or elsewhere than Linux, it is the machine's total
// memory, with the source "machine total". A cgroup limit above the machine's
// total memory cannot be used in full, so the total is returned then.
//
// AvailableMemory returns an error if a cgroup limit file exists but cannot
// be read or parsed, or if the machine's total memory cannot be read when it
// is needed; bytes is then 0. It never panics.
func AvailableMemory() (bytes uint64, source string, err error) {
	total, totalErr := machineTotal()

	if runtime.GOOS == "linux" {
		// Without /proc there is no way to find the cgroup: fall back to the
		// machine's total rather than refuse to start.
		procCgroup, err1 := os.ReadFile("/proc/self/cgroup")
		mountinfo, err2 := os.ReadFile("/proc/self/mountinfo")
		if err1 == nil && err2 == nil {
			limit, src, ok, err := cgroupMemoryLimit(os.DirFS("/"), string(procCgroup), string(mountinfo))
			if err != nil {
				return 0, "", err
			}
			if ok {
				if totalErr != nil || limit <= total {
					return limit, src, nil
				}
				return total, "machine total (" + src + " allows more)", nil
			}
		}
	}

	if totalErr != nil {
		return 0, "", fmt.Errorf("reading the machine's total memory: %w", totalErr)
	}
	return total, "machine total", nil
}

func machineTotal() (uint64, error) {
	vm, err := mem.VirtualMemory()
	if err != nil {
		return 0, err
	}
	if vm.Total == 0 {
		return 0, errors.New("the system reports 0 bytes of memory")
	}
	return vm.Total, nil
}

// v1Unlimited is the threshold at and above which a cgroup v1 limit means
// none: the kernel reports "unlimited" as the largest page-aligned signed
// 64-bit number (9223372036854771712), and no machine has 2^62 bytes.
const v1Unlimited = 1 << 62

// cgroupMemoryLimit finds the memory limit of the cgroup described by
// procCgroup (the contents of /proc/self/cgroup) on the file systems
// described by mountinfo (the contents of /proc/self/mountinfo), reading the
// limit files through fsys, which stands for "/". It is a pure function of
// its inputs so that fixtures can stand in for a machine.
//
// ok is false if there is no limit: no memory cgroup, no mount for it, or
// no limit anywhere on the way up. err is set only when a limit file exists
// but cannot be read or parsed.
func cgroupMemoryLimit(fsys fs.FS, procCgroup, mountinfo string) (limit uint64, source string, ok bool, err error) {
	v1Path, v2Path, hasV1, hasV2 := parseProcCgroup(procCgroup)
	mounts := parseMountinfo(mountinfo)

	// The memory controller is attached to at most one hierarchy. If
	// /proc/self/cgroup names it in a v1 hierarchy, a cgroup2 mount beside it
	// (the hybrid layout) has no memory files, so v1 goes first.
	if hasV1 {
		if m, found := pickMount(mounts, v1Path, func(m mountEntry) bool {
			return m.fsType == "cgroup" && (hasOption(m.superOptions, "memory") || hasOption(m.options, "memory"))
		}); found {
			limit, source, ok, err = walkLimits(fsys, m, v1Path, "memory.limit_in_bytes", "cgroup v1", parseV1Limit)
			if err != nil || ok {
				return limit, source, ok, err
			}
		}
	}
	if hasV2 {
		if m, found := pickMount(mounts, v2Path, func(m mountEntry) bool {
			return m.fsType == "cgroup2"
		}); found {
			return walkLimits(fsys, m, v2Path, "memory.max", "cgroup v2", parseV2Limit)
		}
	}
	return 0, "", false, nil
}

// parseProcCgroup returns the cgroup path of the v1 hierarchy that holds the
// memory controller and the path in the v2 hierarchy, from lines of the form
// "hierarchy-ID:controller-list:cgroup-path".
func parseProcCgroup(s string) (v1Path, v2Path string, hasV1, hasV2 bool) {
	for _, line := range strings.Split(s, "\n") {
		id, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		// The path is everything after the second colon: it may hold colons.
		controllers, p, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(p, "/") {
			continue
		}
		if id == "0" && controllers == "" {
			v2Path, hasV2 = p, true
			continue
		}
		if !hasV1 && hasOption(controllers, "memory") {
			v1Path, hasV1 = p, true
		}
	}
	return v1Path, v2Path, hasV1, hasV2
}

// mountEntry is the part of a /proc/self/mountinfo line that locates a
// cgroup hierarchy.
type mountEntry struct {
	root         string // the directory of the hierarchy mounted (field 4)
	point        string // where it is mounted (field 5)
	options      string // per-mount options (field 6)
	fsType       string // first field after " - "
	superOptions string // third field after " - "
}

// parseMountinfo parses the lines of /proc/self/mountinfo, skipping any it
// cannot make sense of. See proc(5): the optional fields after the sixth
// run up to a lone "-".
func parseMountinfo(s string) []mountEntry {
	var mounts []mountEntry
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		m := mountEntry{
			root:    unescapeMountinfo(f[3]),
			point:   unescapeMountinfo(f[4]),
			options: f[5],
			fsType:  f[sep+1],
		}
		if sep+3 < len(f) {
			m.superOptions = f[sep+3]
		}
		if !strings.HasPrefix(m.root, "/") || !strings.HasPrefix(m.point, "/") {
			continue
		}
		mounts = append(mounts, m)
	}
	return mounts
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]) {
			n := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(n)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// hasOption reports whether the comma-separated list has the item.
func hasOption(list, item string) bool {
	for _, o := range strings.Split(list, ",") {
		if o == item {
			return true
		}
	}
	return false
}

// pickMount chooses, among the mounts that match, the one through which the
// cgroup path is visible: the one whose root is the longest prefix of the
// path. A hierarchy may be mounted several times (bind mounts), and in a
// container the mount's root may not be a prefix at all; then the first
// match stands, and walkLimits falls back to its mount point.
func pickMount(mounts []mountEntry, cgPath string, match func(mountEntry) bool) (mountEntry, bool) {
	var best mountEntry
	found, bestLen := false, -1
	for _, m := range mounts {
		if !match(m) {
			continue
		}
		if _, under := relPath(cgPath, m.root); under && len(m.root) > bestLen {
			best, found, bestLen = m, true, len(m.root)
		} else if !found {
			best, found = m, true
		}
	}
	return best, found
}

// relPath returns p relative to root if p is root or below it.
func relPath(p, root string) (string, bool) {
	p, root = path.Clean(p), path.Clean(root)
	if root == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if p == root {
		return "", true
	}
	if rest, ok := strings.CutPrefix(p, root+"/"); ok {
		return rest, true
	}
	return "", false
}

// cgroupDir returns the directory, as an absolute slash path, that holds the
// files of cgroup cgPath under mount m.
func cgroupDir(fsys fs.FS, m mountEntry, cgPath string) string {
	point := path.Clean(m.point)
	rel, ok := relPath(cgPath, m.root)
	if !ok || slices.Contains(strings.Split(cgPath, "/"), "..") {
		// The cgroup is not below the mount's root, or lies outside the
		// process's cgroup namespace ("/../.."): in a container or behind a
		// bind mount, the mount point itself is the process's cgroup as far
		// as this mount namespace can tell.
		return point
	}
	dir := path.Join(point, rel)
	if _, under := relPath(dir, point); !under {
		return point // a path with ".." must not lead out of the mount
	}
	if fi, err := fs.Stat(fsys, fsysPath(dir)); err != nil || !fi.IsDir() {
		// /proc/self/cgroup shows a path the mount does not (a namespace
		// whose root differs from the mount's): the mount point is the
		// closest cgroup we can see.
		return point
	}
	return dir
}

// fsysPath turns an absolute slash path into a path for an fs.FS rooted at /.
func fsysPath(p string) string {
	p = strings.TrimPrefix(path.Clean(p), "/")
	if p == "" {
		return "."
	}
	return p
}

// walkLimits reads the limit file in the cgroup's directory and in each
// directory above it up to the mount point, and returns the smallest limit.
// A parent's limit binds its children, so the smallest along the way is the
// one that applies. A missing file is skipped: the root cgroup of a v2
// hierarchy has no memory.max.
func walkLimits(fsys fs.FS, m mountEntry, cgPath, file, version string, parse func(string) (uint64, bool, error)) (limit uint64, source string, ok bool, err error) {
	point := path.Clean(m.point)
	for dir := cgroupDir(fsys, m, cgPath); ; dir = path.Dir(dir) {
		name := path.Join(dir, file)
		data, err := fs.ReadFile(fsys, fsysPath(name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return 0, "", false, fmt.Errorf("%s %s: %w", version, name, err)
		default:
			v, limited, err := parse(strings.TrimSpace(string(data)))
			if err != nil {
				return 0, "", false, fmt.Errorf("%s %s: %w", version, name, err)
			}
			if limited && (!ok || v < limit) {
				limit, source, ok = v, version+" "+name, true
			}
		}
		if dir == point || dir == "/" {
			return limit, source, ok, nil
		}
	}
}

// parseV2Limit parses a cgroup v2 memory.max: a number of bytes, or "max".
func parseV2Limit(s string) (uint64, bool, error) {
	if s == "max" {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("want a number of bytes or \"max\", got %q", s)
	}
	return v, true, nil
}

// parseV1Limit parses a cgroup v1 memory.limit_in_bytes.
func parseV1Limit(s string) (uint64, bool, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n < 0 {
			return 0, false, nil // -1 is how "unlimited" is written; be lenient if it is read back
		}
		return 0, false, fmt.Errorf("want a number of bytes, got %q", s)
	}
	if v >= v1Unlimited {
		return 0, false, nil
	}
	return v, true, nil
}
