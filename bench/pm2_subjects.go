package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The three ways the pm2 part runs the app: under memdrain run, under
// PM2 in cluster mode, and alone. Each is a supervised process on a free
// port of 127.0.0.1, with the moments it recycled a worker for memory.

// subject is one of them, started and serving.
type subject struct {
	*supervised
	url string

	mu       sync.Mutex
	recycles []time.Time // each memory recycle's decision
	readies  int         // workers reported ready (or online)
}

func (s *subject) addRecycle(t time.Time) {
	s.mu.Lock()
	s.recycles = append(s.recycles, t)
	s.mu.Unlock()
}

// recyclesBetween counts the recycles decided in [from, to].
func (s *subject) recyclesBetween(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.recycles {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return n
}

// readyCount returns a condition for waitFor: n workers reported ready.
func (s *subject) readyCount(n int) func() error {
	return func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.readies < n {
			return fmt.Errorf("%d ready", s.readies)
		}
		return nil
	}
}

// appEnv is the app's settings, for every way it runs.
func appEnv(cfg pm2Config, leak bool) map[string]string {
	kib := 0
	if leak {
		kib = cfg.LeakKiB
	}
	return map[string]string{"WORK_MS": strconv.Itoa(cfg.WorkMillis), "LEAK_KIB": strconv.Itoa(kib)}
}

func withEnv(env map[string]string) []string {
	out := os.Environ()
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// memdrainLog is the part of a line of memdrain's JSON log the part reads.
type memdrainLog struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Reason string    `json:"reason"`
}

// parseMemdrainLog reads one line of memdrain's stderr. Lines that are
// not JSON (a panic, say) are not log lines.
func parseMemdrainLog(line string) (memdrainLog, bool) {
	var l memdrainLog
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &l) != nil || l.Msg == "" {
		return memdrainLog{}, false
	}
	return l, true
}

// isMemoryRecycle reports whether a memdrain log line is a memory
// recycle's decision: the replacement of a worker over its limit starts.
func (l memdrainLog) isMemoryRecycle() bool {
	return l.Msg == "replacing worker" && l.Reason == "memory"
}

// startMemdrain runs `memdrain run` with the app as its command: workers
// copies, each replaced over limit (no limit when 0).
func startMemdrain(ctx context.Context, bin string, node *nodeEnv, workers int, limit uint64, env map[string]string) (*subject, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--listen", addr, "--workers", strconv.Itoa(workers), "--log-format", "json"}
	if limit > 0 {
		args = append(args, "--max-memory", strconv.FormatUint(limit, 10))
	}
	args = append(args, "--", node.node, node.app)
	cmd := exec.Command(bin, args...)
	cmd.Dir = node.dir
	cmd.Env = withEnv(env)
	s := &subject{url: "http://" + addr + "/"}
	s.supervised, err = startSupervised("memdrain", cmd, memdrainLayout, limit, func(l outputLine) {
		if !l.Stderr {
			return // the workers' output, passed through
		}
		m, ok := parseMemdrainLog(l.Text)
		if !ok {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case m.Msg == "ready":
			s.readies++
		case m.isMemoryRecycle():
			s.recycles = append(s.recycles, m.Time)
		}
	})
	if err != nil {
		return nil, err
	}
	err = s.waitFor(ctx, fmt.Sprintf("%d workers ready", workers), 60*time.Second, 50*time.Millisecond, s.readyCount(workers))
	if err == nil {
		err = waitServing(ctx, s.url, 10*time.Second)
	}
	if err != nil {
		s.stopMemdrain()
		return nil, err
	}
	return s, nil
}

// stopMemdrain stops memdrain as a user does (SIGTERM: it finishes the
// requests in flight and stops its workers) and wants exit status 0.
func (s *subject) stopMemdrain() error {
	exit, err := s.stop(s.signal(syscall.SIGTERM), 40*time.Second)
	if err != nil {
		return err
	}
	if exit != nil {
		return fmt.Errorf("memdrain exited with %v after SIGTERM; want status 0%s", exit, s.outputTail())
	}
	return nil
}

// pm2Recycle reports whether a line of PM2's output (its daemon's log, in
// --no-daemon mode on stdout) is its Worker deciding to reload a process
// over max_memory_restart. The streamed copy of the same message, which
// --no-daemon prints again with a "PM2 |" prefix, is not counted.
func pm2Recycle(line string) bool {
	return strings.Contains(line, "PM2 log: [PM2][WORKER] Process ") && strings.Contains(line, "exceeds --max-memory-restart")
}

// pm2Online reports whether a line of PM2's output is its daemon's report
// that a process of the app is online (started, or restarted).
func pm2Online(line string) bool {
	return strings.Contains(line, "PM2 log: App [") && strings.HasSuffix(strings.TrimSpace(line), "] online")
}

// startPM2 starts PM2's daemon in the foreground (pm2 start --no-daemon:
// the daemon is the process started, and the app's workers are its
// children) with a PM2_HOME of its own under dir, so a PM2 of the user's
// is never touched, and the app in cluster mode from an ecosystem file.
// PM2_WORKER_INTERVAL=1000 makes its memory check every second (its
// default is 30 s). No other PM2 command is run: one that found no daemon
// answering would start one of its own, outside the harness's tree.
func startPM2(ctx context.Context, node *nodeEnv, dir string, workers int, limit uint64, env map[string]string) (*subject, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	home := filepath.Join(dir, "pm2-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	// PM2's first run in a PM2_HOME prints a banner and checks its version
	// over the network; the file says it ran before.
	if err := os.WriteFile(filepath.Join(home, "touch"), []byte(strconv.FormatInt(time.Now().UnixMilli(), 10)), 0o644); err != nil {
		return nil, err
	}
	appEnv := map[string]string{"PORT": port}
	for k, v := range env {
		appEnv[k] = v
	}
	eco, err := ecosystem{app: node.app, instances: workers, limit: limit, env: appEnv}.write(dir)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node.node, node.pm2Bin(), "start", eco, "--no-daemon")
	cmd.Dir = node.dir
	cmd.Env = withEnv(map[string]string{
		"PM2_HOME": home, "PM2_WORKER_INTERVAL": "1000", "PM2_DISABLE_VERSION_CHECK": "true",
	})
	s := &subject{url: "http://" + addr + "/"}
	s.supervised, err = startSupervised("PM2", cmd, pm2Layout, limit, func(l outputLine) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case pm2Online(l.Text):
			s.readies++
		case pm2Recycle(l.Text):
			s.recycles = append(s.recycles, l.T)
		}
	})
	if err != nil {
		return nil, err
	}
	err = s.waitFor(ctx, fmt.Sprintf("%d processes online", workers), 60*time.Second, 50*time.Millisecond, s.readyCount(workers))
	if err == nil {
		err = waitServing(ctx, s.url, 10*time.Second)
	}
	if err != nil {
		s.stopPM2()
		return nil, err
	}
	return s, nil
}

// stopPM2 stops PM2's daemon with SIGINT, on which it stops the app's
// processes (each gets SIGINT, then SIGKILL after kill_timeout) and
// exits.
func (s *subject) stopPM2() error {
	_, err := s.stop(s.signal(syscall.SIGINT), 15*time.Second)
	return err
}

// startAlone runs the app by itself on a port of its own.
func startAlone(ctx context.Context, node *nodeEnv, env map[string]string) (*subject, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	appEnv := map[string]string{"PORT": port}
	for k, v := range env {
		appEnv[k] = v
	}
	cmd := exec.Command(node.node, node.app)
	cmd.Dir = node.dir
	cmd.Env = withEnv(appEnv)
	s := &subject{url: "http://" + addr + "/"}
	if s.supervised, err = startSupervised("the app alone", cmd, aloneLayout, 0, nil); err != nil {
		return nil, err
	}
	if err := waitServing(ctx, s.url, 30*time.Second); err != nil {
		s.stopAlone()
		return nil, fmt.Errorf("the app alone: %w%s", err, s.outputTail())
	}
	return s, nil
}

// stopAlone stops the app with SIGINT, on which it closes its server.
func (s *subject) stopAlone() error {
	_, err := s.stop(s.signal(syscall.SIGINT), 10*time.Second)
	return err
}
