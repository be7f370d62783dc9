//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/loadgen"
)

// memdrainCtl runs the memdrain binary with args (status, recycle...) and
// returns its stdout, stderr and exit code.
func memdrainCtl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("memdrain %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func statusJSON(t *testing.T, sock string) cluster.ControlStatus {
	t.Helper()
	out, errOut, code := memdrainCtl(t, "status", "--json", "--control", sock)
	if code != 0 {
		t.Fatalf("memdrain status --json exited %d: %s", code, errOut)
	}
	var st cluster.ControlStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("memdrain status --json printed %q: %v", out, err)
	}
	return st
}

func servingIn(st cluster.ControlStatus, slot int) (cluster.WorkerStatus, bool) {
	for _, p := range st.Processes {
		if p.Worker == slot && p.State == cluster.StateServing {
			return p, true
		}
	}
	return cluster.WorkerStatus{}, false
}

// memdrain status and recycle speak to a running memdrain run over its
// control socket: the status names the workers memdrain reported ready,
// and recycle 0 replaces worker 0 fork-first, with no failed request.
func TestStatusAndRecycleOverTheControlSocket(t *testing.T) {
	need(t, "python3")
	dir := writeApp(t, "app.py", leakyPython)
	sock := filepath.Join(t.TempDir(), "control.sock")
	m := start(t, dir, []string{"--workers", "2", "--control", sock}, "python3", "app.py")
	ready := m.waitReady(t, 2)

	st := statusJSON(t, sock)
	if st.Pid != m.cmd.Process.Pid || st.Workers != 2 {
		t.Errorf("status: master %d with %d workers; want %d with 2", st.Pid, st.Workers, m.cmd.Process.Pid)
	}
	old, ok := servingIn(st, 0)
	if !ok || !slices.Contains(ready, old.Pid) {
		t.Fatalf("status: slot 0 is %+v (serving: %v); want one of the ready workers %v", old, ok, ready)
	}
	if table, _, code := memdrainCtl(t, "status", "--control", sock); code != 0 || !strings.Contains(table, "SLOT") || !strings.Contains(table, "serving") {
		t.Errorf("memdrain status exited %d, printed:\n%s", code, table)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	results := make([]loadgen.Result, 2)
	for i, keepAlive := range []bool{true, false} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = loadgen.Run(ctx, loadgen.Config{URL: "http://" + m.addr + "/", Clients: 2, KeepAlive: keepAlive, Timeout: 10 * time.Second})
		}()
	}
	if _, errOut, code := memdrainCtl(t, "recycle", "0", "--control", sock); code != 0 {
		t.Fatalf("memdrain recycle 0 exited %d: %s", code, errOut)
	}
	m.waitUntil(t, time.Minute, "worker 0 drained for manual and exited", func(logs []logLine, _ string) bool {
		return count(logs, func(l logLine) bool { return l.Msg == "exited planned" && l.Pid == old.Pid && l.Reason == "manual" }) == 1
	})
	stop()
	wg.Wait()
	for i, r := range results {
		if r.Requests == 0 || r.Failed != 0 {
			t.Errorf("load %d: %v; want requests and none failed", i, r)
		}
	}

	now, ok := servingIn(statusJSON(t, sock), 0)
	if !ok || now.Pid == old.Pid || now.Reason != drain.Manual {
		t.Errorf("after recycle 0, slot 0 is %+v (serving: %v); want a new worker started for manual", now, ok)
	}
	if _, errOut, code := memdrainCtl(t, "recycle", "2", "--control", sock); code != 1 || !strings.Contains(errOut, "accepted: a slot from 0 to 1") {
		t.Errorf("memdrain recycle 2 exited %d, said %q; want 1 and the range", code, errOut)
	}
	if _, errOut, code := memdrainCtl(t, "stop", "--control", sock); code != 0 {
		t.Fatalf("memdrain stop exited %d: %s", code, errOut)
	}
	if code := m.wait(t, time.Minute); code != 0 {
		t.Errorf("memdrain run exited %d after memdrain stop; want 0", code)
	}
}

// Without a socket, the commands say where they looked and how to name one.
func TestControlCommandsNameAMissingSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, errOut, code := memdrainCtl(t, "status", "--control", sock)
	if code != 1 || !strings.Contains(errOut, "no control socket at "+sock) || !strings.Contains(errOut, "--control PATH") {
		t.Errorf("memdrain status on a missing socket exited %d, said %q", code, errOut)
	}
	_, errOut, code = memdrainCtl(t, "reload")
	if code != 2 || !strings.Contains(errOut, "no control socket named") || !strings.Contains(errOut, "XDG_RUNTIME_DIR") {
		t.Errorf("memdrain reload with no socket named exited %d, said %q", code, errOut)
	}
}

// The control commands find the socket as memdrain run chose it, from the
// same flags and variables.
func TestControlPathAsMemdrainRunChoseIt(t *testing.T) {
	for _, tc := range []struct {
		name             string
		control, pidFile string
		env              map[string]string
		want             string
	}{
		{"--control", "/a.sock", "/run/b.pid", map[string]string{"MEMDRAIN_CONTROL": "/c.sock"}, "/a.sock"},
		{"MEMDRAIN_CONTROL over the pid file's", "", "/run/b.pid", map[string]string{"MEMDRAIN_CONTROL": "/c.sock"}, "/c.sock"},
		{"--pid-file", "", "/run/b.pid", map[string]string{"XDG_RUNTIME_DIR": "/x"}, "/run/b.sock"},
		{"MEMDRAIN_PID_FILE", "", "", map[string]string{"MEMDRAIN_PID_FILE": " /run/d.pid ", "XDG_RUNTIME_DIR": "/x"}, "/run/d.sock"},
		{"--pid-file over MEMDRAIN_PID_FILE", "", "/run/b.pid", map[string]string{"MEMDRAIN_PID_FILE": "/run/d.pid"}, "/run/b.sock"},
		{"XDG_RUNTIME_DIR", "", "", map[string]string{"XDG_RUNTIME_DIR": "/x"}, "/x/memdrain.sock"},
		{"nothing", "", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// memdrain run reads cluster's variables from the environment
			// itself: set them there.
			for _, k := range []string{"MEMDRAIN_CONTROL", "MEMDRAIN_PID_FILE", "XDG_RUNTIME_DIR"} {
				t.Setenv(k, tc.env[k])
			}
			if got := controlPath(tc.control, tc.pidFile, os.LookupEnv); got != tc.want {
				t.Errorf("memdrain status chose %q; want %q", got, tc.want)
			}
			args := []string{"--", "node"}
			for flag, v := range map[string]string{"--control": tc.control, "--pid-file": tc.pidFile} {
				if v != "" {
					args = append([]string{flag, v}, args...)
				}
			}
			o, err := parseOptions(args, os.LookupEnv)
			if err != nil {
				t.Fatal(err)
			}
			if o.cluster.Control != tc.want {
				t.Errorf("memdrain run chose %q; want %q", o.cluster.Control, tc.want)
			}
		})
	}
}
