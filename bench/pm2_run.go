package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/internal/loadgen"
)

// nodeLoad is the pm2 part's workload.
type nodeLoad struct {
	Workers    int           `json:"workers"`
	Clients    int           `json:"clients"`
	Limit      uint64        `json:"limit_bytes"`
	WorkMillis int           `json:"request_ms"`
	LeakKiB    int           `json:"leak_kib"`
	Duration   time.Duration `json:"duration_ns"`
}

// leakyNodeApp answers every request after WORK_MS, keeping LEAK_KIB of
// Buffer memory, and closes its server on SIGINT (what PM2 sends first) or
// SIGTERM (what memdrain sends), as PM2's documentation advises.
const leakyNodeApp = `
const http = require('http');
const work = Number(process.env.WORK_MS || 0);
const leak = Number(process.env.LEAK_KIB || 0) * 1024;
const kept = [];
const server = http.createServer((req, res) => {
  setTimeout(() => {
    if (leak > 0) kept.push(Buffer.alloc(leak, 1));
    res.end('ok\n');
  }, work);
});
server.listen(Number(process.env.PORT), '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
`

// nodeEnv is where the pm2 part's programs are.
type nodeEnv struct {
	memdrain, pm2Runtime, app, dir string
}

// nodeSide is one side's figures.
type nodeSide struct {
	Side                      string         `json:"side"`
	Requests                  int            `json:"requests"`
	Failed                    int            `json:"failed"`
	Retried                   int            `json:"retried"`
	Failures                  map[string]int `json:"failures,omitempty"`
	Recycles                  int            `json:"recycles"`
	MaxRSSBytes               uint64         `json:"max_worker_rss_bytes"`
	ThroughputSteadyRPS       float64        `json:"throughput_steady_rps"`
	ThroughputMinRPS          float64        `json:"throughput_min_rps"`
	SupervisorCPUPerRequestUs float64        `json:"supervisor_cpu_per_request_us,omitempty"`
	SupervisorRSSBytes        uint64         `json:"supervisor_rss_bytes,omitempty"`
	latencies
}

// runNodeSide starts one side, waits until its workers serve, drives the
// load, and stops it.
func runNodeSide(ctx context.Context, side string, env nodeEnv, cfg nodeLoad, prog *progress) (*nodeSide, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	workers, leak := cfg.Workers, cfg.LeakKiB
	var cmd *exec.Cmd
	switch side {
	case sideMemdrain:
		cmd = exec.Command(env.memdrain, "run", "--listen", addr, "--workers", strconv.Itoa(workers),
			"--max-memory", strconv.FormatUint(cfg.Limit, 10), "--log-format", "json", "--", "node", env.app)
	case sidePM2:
		cmd = exec.Command(env.pm2Runtime, "start", env.app, "-i", strconv.Itoa(workers),
			"--max-memory-restart", strconv.FormatUint(cfg.Limit, 10))
	case sideAlone:
		workers, leak = 1, 0
		cmd = exec.Command("node", env.app)
	case sideProxied:
		workers, leak = 1, 0
		cmd = exec.Command(env.memdrain, "run", "--listen", addr, "--workers", "1", "--log-format", "json", "--", "node", env.app)
	}
	cmd.Dir = env.dir
	cmd.Env = append(os.Environ(), "WORK_MS="+strconv.Itoa(cfg.WorkMillis), "LEAK_KIB="+strconv.Itoa(leak),
		"PM2_HOME="+filepath.Join(env.dir, "pm2-home"), "PM2_WORKER_INTERVAL=1000")
	if side == sidePM2 || side == sideAlone {
		cmd.Env = append(cmd.Env, "PORT="+port)
	}
	logPath := filepath.Join(env.dir, strings.ReplaceAll(side, " ", "-")+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	defer func() {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
		}
		syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}()
	// The workers: each a process tree (memdrain's shims, whose trees
	// are the apps), or the node processes under PM2, or node itself.
	workerTrees := func() [][]int {
		switch side {
		case sideAlone:
			return [][]int{{pid}}
		case sidePM2:
			var out [][]int
			for _, c := range procChildren(pid) {
				out = append(out, []int{c})
			}
			return out
		}
		var out [][]int
		for _, shim := range procChildren(pid) {
			out = append(out, procTree(shim))
		}
		return out
	}
	if err := waitServing(ctx, "http://"+addr+"/", 30*time.Second); err != nil {
		return nil, err
	}
	if err := waitWorkers(ctx, workerTrees, workers, exited); err != nil {
		return nil, err
	}

	res := &nodeSide{Side: side, Failures: map[string]int{}}
	var mu sync.Mutex
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			for _, tree := range workerTrees() {
				var sum uint64
				for _, p := range tree {
					n, _ := peakRSS(p)
					sum += n
				}
				mu.Lock()
				res.MaxRSSBytes = max(res.MaxRSSBytes, sum)
				mu.Unlock()
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	cpu0, _ := cpuTime(pid)
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	progCtx, stopProg := context.WithCancel(ctx)
	go prog.run(progCtx, "pm2 part, "+side, cfg.Duration, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d requests, %d failed", res.Requests, res.Failed)
	})
	var lat []time.Duration
	var ends []time.Time
	start := time.Now()
	var load sync.WaitGroup
	for g := range groupNames {
		clients := cfg.Clients / 2
		if g == keepAlive {
			clients = cfg.Clients - clients
		}
		load.Add(1)
		go func() {
			defer load.Done()
			loadgen.Run(loadCtx, loadgen.Config{
				URL: "http://" + addr + "/", Clients: clients, KeepAlive: g == keepAlive,
				OnResponse: func(o loadgen.Outcome) {
					mu.Lock()
					defer mu.Unlock()
					res.Requests++
					if o.Failure != "" {
						res.Failed++
						res.Failures[o.Failure]++
					}
					if o.Retried {
						res.Retried++
					}
					lat = append(lat, o.End.Sub(o.Start))
					ends = append(ends, o.End)
				},
			})
		}()
	}
	load.Wait()
	end := time.Now()
	stopProg()
	cpu1, _ := cpuTime(pid)
	stopSampling()
	<-sampled
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-exited:
		return nil, fmt.Errorf("it exited during the load; its log is %s", logPath)
	default:
	}
	if side != sideAlone {
		res.SupervisorRSSBytes, _ = rss(pid)
		if res.Requests > 0 {
			res.SupervisorCPUPerRequestUs = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(res.Requests)
		}
	}
	res.latencies = summarize(lat)
	seconds := int(end.Sub(start) / time.Second)
	perSecond := buckets(ends, start, time.Second, seconds)
	if len(perSecond) > 2 {
		perSecond = perSecond[1 : len(perSecond)-1] // the first and last seconds are partial
	}
	if len(perSecond) > 0 {
		res.ThroughputSteadyRPS = float64(median(perSecond))
		res.ThroughputMinRPS = float64(slices.Min(perSecond))
	}
	res.Recycles, err = countRecycles(side, logPath)
	return res, err
}

// waitWorkers waits until trees returns n workers with a process each.
func waitWorkers(ctx context.Context, trees func() [][]int, n int, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := 0
		for _, t := range trees() {
			if len(t) > 0 {
				got++
			}
		}
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errNoWorkers
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d of %d after 30s", errNoWorkers, got, n)
		}
	}
}

// countRecycles reads a side's log for its memory recycles: memdrain's
// planned exits for memory, PM2's restarts over max_memory_restart.
func countRecycles(side, logPath string) (int, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch side {
		case sidePM2:
			if strings.Contains(line, "exceeds --max-memory-restart") {
				n++
			}
		default:
			var l struct{ Msg, Reason string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "exited planned" && l.Reason == "memory" {
				n++
			}
		}
	}
	return n, sc.Err()
}

// procChildren lists a process's children, from every thread's
// /proc/PID/task/TID/children.
func procChildren(pid int) []int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(filepath.Join(dir, t.Name(), "children"))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// procTree lists every process under pid, pid left out.
func procTree(pid int) []int {
	var all []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range procChildren(p) {
			all = append(all, c)
			queue = append(queue, c)
		}
	}
	return all
}

// lastLines returns the last n lines of out.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}
