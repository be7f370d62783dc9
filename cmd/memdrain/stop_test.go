//go:build linux

package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/loadgen"
)

// SIGTERM with requests in flight: every one of them completes, and
// memdrain exits 0.
func TestSIGTERMFinishesRequestsInFlight(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", leakyNode)
	m := start(t, dir, []string{"--workers", "2"}, "node", "app.js")
	m.waitReady(t, 2)
	const slow = 6
	var wg sync.WaitGroup
	errs := make(chan error, slow)
	for range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + m.addr + "/slow")
			if err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != "slow done\n" {
				errs <- &badAnswer{resp.StatusCode, string(body), err}
			}
		}()
	}
	m.waitUntil(t, 10*time.Second, "requests in flight", func(_ []logLine, text string) bool {
		return strings.Count(text, "slow request started") == slow
	})
	m.signal(t, syscall.SIGTERM)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a request in flight at SIGTERM: %v", err)
	}
	if code := m.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit status %d after SIGTERM; want 0", code)
	}
}

type badAnswer struct {
	status int
	body   string
	err    error
}

func (b *badAnswer) Error() string {
	return "status " + strconv.Itoa(b.status) + ", body " + strconv.Quote(b.body) + ", err " + errString(b.err)
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// memdrain killed with SIGKILL under load: within 2 s no process of any
// worker's tree is left, grandchildren of a shell that does not exec
// included.
func TestSIGKILLLeavesNoProcess(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", leakyNode)
	m := start(t, dir, []string{"--workers", "2"}, "sh", "-c", "node app.js; true")
	shims := m.waitReady(t, 2)
	var tree []int
	for _, shim := range shims {
		tree = append(tree, shim)
		below := descendants(shim)
		if len(below) < 2 {
			t.Fatalf("worker pid %d has %v under it; want sh and node", shim, below)
		}
		tree = append(tree, below...)
	}
	ctx, stop := context.WithCancel(context.Background())
	loaded := make(chan loadgen.Result, 1)
	answered := make(chan struct{})
	var once sync.Once
	go func() {
		loaded <- loadgen.Run(ctx, loadgen.Config{URL: "http://" + m.addr + "/health", Clients: 4, KeepAlive: true,
			OnResponse: func(loadgen.Outcome) { once.Do(func() { close(answered) }) }})
	}()
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the load within 10s")
	}
	m.signal(t, syscall.SIGKILL)
	m.wait(t, 10*time.Second)
	killed := time.Now()
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		left := alive(tree, shims)
		if len(left) == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%v after memdrain's SIGKILL, processes of its workers remain: %v", time.Since(killed).Round(time.Millisecond), left)
		}
	}
	stop()
	<-loaded
}

// alive returns which of pids still run (a zombie does not), and any
// process still in one of the groups.
func alive(pids, groups []int) []string {
	var left []string
	inGroup := map[int]bool{}
	for _, g := range groups {
		inGroup[g] = true
	}
	wanted := map[int]bool{}
	for _, p := range pids {
		wanted[p] = true
	}
	eachProcess(func(pid int, name string, fields []string) {
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			return
		}
		pgrp, _ := strconv.Atoi(fields[2])
		if wanted[pid] || inGroup[pgrp] {
			left = append(left, name)
		}
	})
	return left
}
