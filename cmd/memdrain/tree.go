//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/memdrain/memdrain/memory"
)

// treeSampler measures a worker as the memory of every process under its
// shim, the shim left out: the app, and whatever it started (the node that
// "npm start" or "sh -c" runs, where the leak is). Each process is
// measured with base (memory.RSS or memory.Anon) and the figures are added:
// with RSS, pages that processes of the tree share (a shell's libc and
// node's) count once in each.
type treeSampler struct{ base memory.Sampler }

// Sample implements memory.Sampler. pid is the shim's.
func (t treeSampler) Sample(pid int) (uint64, error) {
	var total uint64
	measured := 0
	for _, p := range descendants(pid) {
		n, err := t.base.Sample(p)
		if err != nil {
			continue // exited since it was listed
		}
		total += n
		measured++
	}
	if measured == 0 {
		return 0, fmt.Errorf("no process runs under worker pid %d", pid)
	}
	return total, nil
}

// descendants returns every process under root, root left out.
func descendants(root int) []int {
	childrenOf := children
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d/children", root, root)); err != nil {
		// A kernel without CONFIG_PROC_CHILDREN: one scan of /proc.
		byParent := scanParents()
		childrenOf = func(pid int) []int { return byParent[pid] }
	}
	var all []int
	queue := []int{root}
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range childrenOf(pid) {
			if !seen[c] {
				seen[c] = true
				all = append(all, c)
				queue = append(queue, c)
			}
		}
	}
	return all
}

// children lists pid's children from /proc/PID/task/*/children: a child
// is listed under the thread that started it, and a Go program (the shim)
// starts them from any of its threads.
func children(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, task := range tasks {
		data, err := os.ReadFile(dir + "/" + task.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// scanParents maps every process to its children, from /proc/*/stat.
func scanParents() map[int][]int {
	byParent := make(map[int][]int)
	eachProcess(func(pid int, _ string, fields []string) {
		if len(fields) < 2 {
			return
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			byParent[ppid] = append(byParent[ppid], pid)
		}
	})
	return byParent
}

// eachProcess calls fn for every process in /proc with its "pid (comm)"
// and the fields of /proc/PID/stat after the command: the state, the
// parent, the process group... The command, in parentheses, may hold
// spaces, so the fields are split after its last ")".
func eachProcess(fn func(pid int, name string, fields []string)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		end := strings.LastIndexByte(s, ')') + 1
		fn(pid, s[:end], strings.Fields(s[end:]))
	}
}
