//go:build linux

package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/memdrain/memdrain/memory"
)

func TestWorkerShareSplitsTheCgroupLimit(t *testing.T) {
	l := memory.ContainerLimit{Bytes: 512 << 20, Source: "cgroup v2 /sys/fs/cgroup/memory.max"}
	for _, tc := range []struct {
		c    cluster.Config
		want string
	}{
		{cluster.Config{Workers: 2}, "153.6MiB: 90% of the cgroup limit 512MiB (cgroup v2 /sys/fs/cgroup/memory.max), divided by 3 (2 workers + 1 replacement) per worker"},
		{cluster.Config{Workers: 1}, "230.4MiB: 90% of the cgroup limit 512MiB (cgroup v2 /sys/fs/cgroup/memory.max), divided by 2 (1 worker + 1 replacement) per worker"},
		// More replacements than workers never run at once.
		{cluster.Config{Workers: 2, MaxReplacements: 5}, "115.2MiB: 90% of the cgroup limit 512MiB (cgroup v2 /sys/fs/cgroup/memory.max), divided by 4 (2 workers + 2 replacements) per worker"},
	} {
		limit, why := workerShare(l, tc.c)
		if why != tc.want {
			t.Errorf("%+v: %q; want %q", tc.c, why, tc.want)
		}
		if want := l.Share(0.9, tc.c.Workers+min(max(tc.c.MaxReplacements, 1), tc.c.Workers)); limit != want {
			t.Errorf("%+v: limit %d; want %d", tc.c, limit, want)
		}
	}
}

// Any memory setting given, even 0, is the operator's choice, and the
// cgroup's limit gives no default then.
func TestParseOptionsNotesAGivenMemorySetting(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{[]string{"--", "app"}, nil, false},
		{[]string{"--max-memory", "0", "--", "app"}, nil, true},
		{[]string{"--total-memory", "1Gi", "--", "app"}, nil, true},
		{[]string{"--hard-memory", "200Mi", "--", "app"}, nil, true},
		{[]string{"--", "app"}, map[string]string{"MEMDRAIN_MAX_MEMORY": "0"}, true},
		{[]string{"--", "app"}, map[string]string{"MEMDRAIN_MAX_MEMORY": " "}, false},
	} {
		lookup := none
		if tc.env != nil {
			lookup = func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		}
		o, err := parseOptions(tc.args, lookup)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if o.memoryGiven != tc.want {
			t.Errorf("%v %v: memoryGiven %v; want %v", tc.args, tc.env, o.memoryGiven, tc.want)
		}
	}
}

// memdrain run with no --max-memory, in a memory cgroup, gives each worker
// its share of 90 % of the cgroup's limit, says so, and recycles leaking
// workers at it without a failed request and before the kernel's OOM
// killer acts.
func TestMaxMemoryDefaultsToTheCgroupsShare(t *testing.T) {
	need(t, "node")
	cg := testkit.NewMemoryCgroup(t, 640<<20)
	dir := writeApp(t, "app.js", leakyNode)
	addr := freeAddr(t)
	// The shell puts itself in the cgroup, then becomes memdrain.
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, cg.Procs(), binary,
		"run", "--listen", addr, "--log-format", "json", "--workers", "2", "--", "node", "app.js")
	m := launchCmd(t, dir, cmd)
	m.addr = addr
	want := "--max-memory 192MiB: 90% of the cgroup limit 640MiB (" + cg.Version
	m.waitUntil(t, 10*time.Second, "log of the default --max-memory", func(logs []logLine, _ string) bool {
		for _, l := range logs {
			if strings.HasPrefix(l.Msg, want) && strings.HasSuffix(l.Msg, "divided by 3 (2 workers + 1 replacement) per worker") {
				return true
			}
		}
		return false
	})
	m.waitReady(t, 2)
	loadUntilRecycled(t, m, 3, nil)
	m.stop(t)
	t.Logf("peak %s of %d", cg.Read(t, cg.PeakFile), 640<<20)
	if oom := cg.Read(t, cg.OOMFile); !strings.Contains(oom, "oom_kill 0") {
		t.Errorf("the kernel killed in the cgroup: %s", oom)
	}
}
