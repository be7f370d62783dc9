package memory

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each directory under testdata/cgroup is a machine in miniature: the
// process's /proc/self/cgroup and /proc/self/mountinfo, and the cgroup files
// they lead to.
func TestCgroupMemoryLimitFixtures(t *testing.T) {
	tests := []struct {
		dir    string
		limit  uint64
		source string // empty when there is no limit
	}{
		// A container's own cgroup (cgroup namespace) with no limit.
		{dir: "v2-root-max"},
		// A container's own cgroup with `docker run --memory=512m`.
		{dir: "v2-root-limit", limit: 512 << 20, source: "cgroup v2 /sys/fs/cgroup/memory.max"},
		// Kubernetes seen from the host: the pod's 256Mi binds its
		// container's 512Mi, and the 20Gi above both does not matter.
		{dir: "v2-nested", limit: 256 << 20, source: "cgroup v2 /sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/memory.max"},
		{dir: "v2-max-everywhere"},
		{dir: "v1", limit: 1 << 30, source: "cgroup v1 /sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes"},
		// The memory controller shares a hierarchy with cpu, mounted
		// somewhere other than /sys/fs/cgroup; the limit is on the parent.
		{dir: "v1-combined", limit: 768 << 20, source: "cgroup v1 /cgroup/mem/app/memory.limit_in_bytes"},
		// 9223372036854771712 and 9223372036854775807 both mean no limit.
		{dir: "v1-unlimited"},
		// Docker on v1 mounts the container's own cgroup (root field
		// /docker/0123abcd) at /sys/fs/cgroup/memory.
		{dir: "v1-docker", limit: 512 << 20, source: "cgroup v1 /sys/fs/cgroup/memory/memory.limit_in_bytes"},
		// The v1 memory controller beside a cgroup2 hierarchy: v1 counts,
		// even though the fixture plants a smaller memory.max in the
		// unified hierarchy to catch reading the wrong one.
		{dir: "hybrid", limit: 2 << 30, source: "cgroup v1 /sys/fs/cgroup/memory/process_api/d3bc4c97c785886b1086e3f579a368c1/memory.limit_in_bytes"},
		// This machine as it was when the fixtures were written.
		{dir: "hybrid-unlimited"},
		// /proc/self/cgroup names a path the mount does not show: the mount
		// point is the process's cgroup.
		{dir: "container-namespaced", limit: 256 << 20, source: "cgroup v2 /sys/fs/cgroup/memory.max"},
	}

	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.dir] = true
		t.Run(tt.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", "cgroup", tt.dir)
			procCgroup, err := os.ReadFile(filepath.Join(dir, "proc_self_cgroup"))
			require.NoError(t, err)
			mountinfo, err := os.ReadFile(filepath.Join(dir, "proc_self_mountinfo"))
			require.NoError(t, err)

			limit, source, ok, err := cgroupMemoryLimit(os.DirFS(dir), string(procCgroup), string(mountinfo))
			require.NoError(t, err)
			assert.Equal(t, tt.source != "", ok, "ok")
			assert.Equal(t, tt.limit, limit, "limit")
			assert.Equal(t, tt.source, source, "source")
		})
	}

	entries, err := os.ReadDir(filepath.Join("testdata", "cgroup"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.True(t, covered[e.Name()], "fixture %s has no row in this table", e.Name())
	}
}

func TestCgroupMemoryLimitEdgeCases(t *testing.T) {
	const v2Mount = "31 23 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
	const v1Mount = "34 31 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
	tests := []struct {
		name       string
		procCgroup string
		mountinfo  string
		fsys       fstest.MapFS
		limit      uint64
		source     string
		err        string // a fragment of the error, if one is wanted
	}{
		{
			name:       "no cgroup at all",
			procCgroup: "",
			mountinfo:  v2Mount,
			fsys:       fstest.MapFS{"sys/fs/cgroup/memory.max": {Data: []byte("1048576\n")}},
		},
		{
			name:       "cgroup but no mount for it",
			procCgroup: "0::/a\n",
			mountinfo:  "27 1 254:0 / / rw - ext4 /dev/vda rw\n",
			fsys:       fstest.MapFS{"sys/fs/cgroup/a/memory.max": {Data: []byte("1048576\n")}},
		},
		{
			name:       "v2 limit that is not a number",
			procCgroup: "0::/a\n",
			mountinfo:  v2Mount,
			fsys:       fstest.MapFS{"sys/fs/cgroup/a/memory.max": {Data: []byte("lots\n")}},
			err:        `cgroup v2 /sys/fs/cgroup/a/memory.max: want a number of bytes or "max", got "lots"`,
		},
		{
			name:       "v1 limit that is not a number",
			procCgroup: "4:memory:/a\n",
			mountinfo:  v1Mount,
			fsys:       fstest.MapFS{"sys/fs/cgroup/memory/a/memory.limit_in_bytes": {Data: []byte("12k\n")}},
			err:        `cgroup v1 /sys/fs/cgroup/memory/a/memory.limit_in_bytes: want a number of bytes, got "12k"`,
		},
		{
			name:       "limit file that cannot be read",
			procCgroup: "0::/a\n",
			mountinfo:  v2Mount,
			fsys:       fstest.MapFS{"sys/fs/cgroup/a/memory.max": {Mode: os.ModeDir}},
			err:        "cgroup v2 /sys/fs/cgroup/a/memory.max",
		},
		{
			name:       "v1 limit of -1",
			procCgroup: "4:memory:/a\n",
			mountinfo:  v1Mount,
			fsys:       fstest.MapFS{"sys/fs/cgroup/memory/a/memory.limit_in_bytes": {Data: []byte("-1\n")}},
		},
		{
			name:       "v2 limit of zero is a limit",
			procCgroup: "0::/a\n",
			mountinfo:  v2Mount,
			fsys:       fstest.MapFS{"sys/fs/cgroup/a/memory.max": {Data: []byte("0\n")}},
			source:     "cgroup v2 /sys/fs/cgroup/a/memory.max",
		},
		{
			name:       "escaped mount point",
			procCgroup: "0::/a\n",
			mountinfo:  `31 23 0:28 / /run/my\040cgroups rw - cgroup2 cgroup2 rw` + "\n",
			fsys:       fstest.MapFS{"run/my cgroups/a/memory.max": {Data: []byte("4096\n")}},
			limit:      4096,
			source:     "cgroup v2 /run/my cgroups/a/memory.max",
		},
		{
			name:       "cgroup root mounted at /",
			procCgroup: "0::/a\n",
			mountinfo:  "31 23 0:28 / / rw - cgroup2 cgroup2 rw\n",
			fsys: fstest.MapFS{
				"memory.max":   {Data: []byte("8192\n")},
				"a/memory.max": {Data: []byte("max\n")},
			},
			limit:  8192,
			source: "cgroup v2 /memory.max",
		},
		{
			name:       "outside the namespace root stays inside the mount",
			procCgroup: "0::/../../sibling\n",
			mountinfo:  v2Mount,
			fsys: fstest.MapFS{
				"sys/fs/cgroup/memory.max":         {Data: []byte("max\n")},
				"sys/fs/cgroup/sibling/memory.max": {Data: []byte("4096\n")},
				"sys/sibling/memory.max":           {Data: []byte("4096\n")},
			},
		},
		{
			name:       "bind mount of a subtree is preferred when it holds the path",
			procCgroup: "0::/ctr/app\n",
			mountinfo: "31 23 0:28 /other /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n" +
				"32 23 0:28 /ctr /mnt/ctr rw - cgroup2 cgroup2 rw\n",
			fsys: fstest.MapFS{
				"sys/fs/cgroup/memory.max":     {Data: []byte("4096\n")},
				"mnt/ctr/app/memory.max":       {Data: []byte("max\n")},
				"mnt/ctr/memory.max":           {Data: []byte("65536\n")},
				"sys/fs/cgroup/app/memory.max": {Data: []byte("4096\n")},
			},
			limit:  65536,
			source: "cgroup v2 /mnt/ctr/memory.max",
		},
		{
			name:       "v1 memory line but no v1 mount falls back to v2",
			procCgroup: "4:memory:/a\n0::/b\n",
			mountinfo:  v2Mount,
			fsys:       fstest.MapFS{"sys/fs/cgroup/b/memory.max": {Data: []byte("4096\n")}},
			limit:      4096,
			source:     "cgroup v2 /sys/fs/cgroup/b/memory.max",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit, source, ok, err := cgroupMemoryLimit(tt.fsys, tt.procCgroup, tt.mountinfo)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.False(t, ok)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.source != "", ok, "ok")
			assert.Equal(t, tt.limit, limit, "limit")
			assert.Equal(t, tt.source, source, "source")
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	got := parseMountinfo(
		"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n" +
			"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n" +
			"42 31 0:39 /a\\134b /x\\011y rw - cgroup cgroup rw,memory\n" +
			"not a mountinfo line\n" +
			"1 2 3 4 5 6 -\n" +
			"1 2 3 rel /p rw - cgroup2 cgroup2 rw\n" +
			"\n")
	assert.Equal(t, []mountEntry{
		{root: "/mnt1", point: "/mnt2", options: "rw,noatime", fsType: "ext3", superOptions: "rw,errors=continue"},
		{root: "/", point: "/sys/fs/cgroup/unified", options: "rw,relatime", fsType: "cgroup2", superOptions: "rw"},
		{root: `/a\b`, point: "/x\ty", options: "rw", fsType: "cgroup", superOptions: "rw,memory"},
	}, got)
}

// Garbage in must never panic, and must never invent a limit.
func TestCgroupMemoryLimitGarbage(t *testing.T) {
	inputs := []string{
		"", ":", "::", ":::", "0::", "0::/", "4:memory:", "4:memory:relative",
		"- - - - - - - - -", "1 2 3 4 5 6 - cgroup2", "1 2 3 / / rw - cgroup2",
		"\\", "1 2 3 /\\0 /\\777 rw - cgroup2 cgroup2 rw", "\x00\xff\n\n\n",
	}
	fsys := fstest.MapFS{}
	for _, procCgroup := range inputs {
		for _, mountinfo := range inputs {
			assert.NotPanics(t, func() {
				_, _, ok, err := cgroupMemoryLimit(fsys, procCgroup, mountinfo)
				assert.NoError(t, err)
				assert.False(t, ok)
			}, "procCgroup %q, mountinfo %q", procCgroup, mountinfo)
		}
	}
}

// On this machine, whatever it is, only this much must hold.
func TestAvailableMemoryLive(t *testing.T) {
	bytes, source, err := AvailableMemory()
	require.NoError(t, err)
	assert.Positive(t, bytes)
	assert.NotEmpty(t, source)
	t.Logf("%s from %s", FormatSize(bytes), source)
}
