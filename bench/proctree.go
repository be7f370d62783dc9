package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A snapshot of every process on the machine, read from /proc/<pid>/stat,
// so that a supervisor's process tree can be split into its own processes
// and its workers' trees (a worker's app may be a grandchild: sh runs
// node).

// procStat is one process, as /proc/<pid>/stat shows it.
type procStat struct {
	pid, ppid int
	start     uint64        // starttime, in clock ticks since boot: with pid, the process's identity
	cpu       time.Duration // utime + stime
	rss       uint64        // bytes
}

// procID names a process for good: a pid is reused, a pid and its start
// time are not.
type procID struct {
	pid   int
	start uint64
}

func (p procStat) id() procID { return procID{p.pid, p.start} }

// procTable is a snapshot: every process and each one's children.
type procTable struct {
	procs    map[int]procStat
	children map[int][]int
}

// readProcs reads every process's stat file. Processes that exit while it
// reads are left out.
func readProcs() (*procTable, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	t := &procTable{procs: map[int]procStat{}, children: map[int][]int{}}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it exited
		}
		p, err := parseStat(pid, b)
		if err != nil {
			return nil, err
		}
		t.procs[pid] = p
		t.children[p.ppid] = append(t.children[p.ppid], pid)
	}
	for _, c := range t.children {
		slices.Sort(c)
	}
	return t, nil
}

// parseStat reads the fields procStat keeps from a /proc/<pid>/stat text.
func parseStat(pid int, b []byte) (procStat, error) {
	// The command name, in parentheses, may hold spaces and parentheses:
	// count the fields after its last closing parenthesis. Field 3 (state)
	// is the first of them.
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, b)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 22", pid, len(f))
	}
	num := func(field int) (uint64, error) { // field numbers as in proc(5)
		n, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat field %d: %w", pid, field, err)
		}
		return n, nil
	}
	var v [5]uint64
	for i, field := range []int{4, 14, 15, 22, 24} { // ppid, utime, stime, starttime, rss
		n, err := num(field)
		if err != nil {
			return procStat{}, err
		}
		v[i] = n
	}
	return procStat{
		pid: pid, ppid: int(v[0]),
		cpu:   time.Duration(v[1]+v[2]) * time.Second / clockTicks,
		start: v[3], rss: v[4] * pageSize,
	}, nil
}

// descendants returns pid's children, their children, and so on (not pid
// itself).
func (t *procTable) descendants(pid int) []int {
	var out []int
	queue := slices.Clone(t.children[pid])
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, t.children[p]...)
	}
	return out
}

// rssOf sums the resident memory of pids.
func (t *procTable) rssOf(pids []int) uint64 {
	var sum uint64
	for _, p := range pids {
		sum += t.procs[p].rss
	}
	return sum
}
