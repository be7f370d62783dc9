package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStatSkipsTheCommandName(t *testing.T) {
	// A command name may hold spaces and parentheses; the fields are
	// counted after its last ")".
	line := "4242 (a b) c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 98765 1000000 300 18446744073709551615\n"
	p, err := parseStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{pid: 4242, ppid: 17, start: 98765, cpu: 3 * time.Second, rss: 300 * pageSize}
	if p != want {
		t.Errorf("parseStat = %+v; want %+v", p, want)
	}
	for _, bad := range []string{"4242 no name", "4242 (x) S 1 2 3", "4242 (x) S one 4242 4242 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 6 7"} {
		if _, err := parseStat(4242, []byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted it", bad)
		}
	}
}

func TestZombie(t *testing.T) {
	if !zombie([]byte("12 (x) y) Z 1 2")) || zombie([]byte("12 (x Z) S 1 2")) {
		t.Error("zombie misread the state after the command name")
	}
}

// startTree starts sh -c script in a process group of its own and waits
// until the tree under it has n descendants.
func startTree(t *testing.T, script string, n int) (*exec.Cmd, *procTable) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd, waitDescendants(t, cmd.Process.Pid, n)
}

// waitDescendants reads /proc until pid has n descendants, for at most
// 10 s.
func waitDescendants(t *testing.T, pid, n int) *procTable {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tab, err := readProcs()
		if err != nil {
			t.Fatal(err)
		}
		if len(tab.descendants(pid)) >= n {
			return tab
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has descendants %v after 10 s; want %d", pid, tab.descendants(pid), n)
		}
		time.Sleep(10 * time.Millisecond) // polling /proc: there is no event to wait on
	}
}

// The layouts split a real tree, root → sh → sleep, as a supervisor's
// processes and a worker's: memdrain's shim (the middle sh) is its own,
// not the worker's; PM2's child is the worker.
func TestLayoutsSplitARealTree(t *testing.T) {
	cmd, tab := startTree(t, "sh -c 'sleep 30; true'; true", 2)
	root := cmd.Process.Pid
	mid := tab.children[root]
	if len(mid) != 1 {
		t.Fatalf("root's children %v; want the inner sh", mid)
	}
	leaf := tab.children[mid[0]]
	if len(leaf) != 1 {
		t.Fatalf("the inner sh's children %v; want sleep", leaf)
	}
	for _, c := range []struct {
		name            string
		layout          treeLayout
		own, workerPids []int
	}{
		{"memdrain", memdrainLayout, []int{root, mid[0]}, leaf},
		{"pm2", pm2Layout, []int{root}, []int{mid[0], leaf[0]}},
		{"alone", aloneLayout, nil, []int{root, mid[0], leaf[0]}},
	} {
		own, workers := c.layout(tab, root)
		if !slices.Equal(own, c.own) || len(workers) != 1 || !slices.Equal(workers[0], c.workerPids) {
			t.Errorf("%s: own %v, workers %v; want own %v, one worker %v", c.name, own, workers, c.own, c.workerPids)
		}
	}
}

// A process that outlives its supervisor's stop (here a sleep the root sh
// left behind when it was killed) is killed by pid and named.
func TestSupervisedStopKillsWhatOutlivedIt(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	s, err := startSupervised("tree", cmd, aloneLayout, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-s.pid, syscall.SIGKILL) }) // if the test fails: the sleep is in sh's group
	s.settle = 100 * time.Millisecond                           // the sleep would not end on its own anyway
	tab := waitDescendants(t, s.pid, 1)
	sleeper := tab.descendants(s.pid)[0]
	s.watch.sample() // the watch has seen the sleep
	_, err = s.stop(func() error { return syscall.Kill(s.pid, syscall.SIGKILL) }, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(sleeper)) {
		t.Fatalf("stop = %v; want an error naming the survivor %d", err, sleeper)
	}
	// SIGKILL was sent: the sleep is gone or a zombie awaiting its reaper.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", sleeper))
		if err != nil || zombie(b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs 10 s after stop killed it", sleeper)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The watch measures a worker's tree as a whole and the supervisor's own
// memory apart from it.
func TestTreeWatchMeasuresWorkersAndSupervisor(t *testing.T) {
	cmd, _ := startTree(t, "sh -c 'sleep 30; true'; true", 2)
	w := watchTree(cmd.Process.Pid, memdrainLayout, 1<<40)
	defer w.end()
	w.begin()
	f, err := w.figures()
	if err != nil {
		t.Fatal(err)
	}
	if f.WorkerPeak == 0 || f.OwnRSS == 0 || f.OwnPeak < f.OwnRSS {
		t.Errorf("figures %+v; want a worker's memory and the supervisor's own", f)
	}
	if f.OwnPSS == 0 || f.OwnPSS > f.OwnRSS || f.OwnPeakPSS < f.OwnPSS {
		t.Errorf("figures %+v; want the supervisor's PSS, positive and at most its RSS", f)
	}
	if f.Guarded {
		t.Error("the guard closed under a 1 TiB limit")
	}
}

// A process of the tree that ends on its own soon after its supervisor
// exited (a worker finishing its shutdown) is not left behind.
func TestSupervisedStopWaitsForTheTreeToEnd(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 1 & wait")
	s, err := startSupervised("tree", cmd, aloneLayout, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-s.pid, syscall.SIGKILL) })
	waitDescendants(t, s.pid, 1)
	s.watch.sample()
	if _, err := s.stop(func() error { return syscall.Kill(s.pid, syscall.SIGKILL) }, 10*time.Second); err != nil {
		t.Fatalf("stop = %v; want no error: the sleep ended on its own within %v", err, s.settle)
	}
}
