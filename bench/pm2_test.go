package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Lines PM2 7 printed in --no-daemon mode during a memory reload: each
// message of its daemon comes twice, as a log line and streamed again.
var pm2Output = []string{
	"2026-11-26T00:43:04: PM2 log: [PM2][WORKER] Process 0 restarted because it exceeds --max-memory-restart value (current_memory=63000576 max_memory_limit=62914560 [octets])",
	"2026-11-26T00:43:04: PM2 log: App [leaky:0] starting in -cluster mode-",
	"\x1b[2m\x1b[90m00:43:04 \x1b[39m\x1b[22m\x1b[34mPM2      | \x1b[39m[PM2][WORKER] Process 0 restarted because it exceeds --max-memory-restart value (current_memory=63000576 max_memory_limit=62914560 [octets])",
	"2026-11-26T00:43:05: PM2 log: App [leaky:0] online",
	"\x1b[2m\x1b[90m00:43:05 \x1b[39m\x1b[22m\x1b[34mPM2      | \x1b[39mApp [leaky:0] online",
	"2026-11-26T00:43:05: PM2 log: -reload- New worker listening",
	"2026-11-26T00:43:05: PM2 log: App [leaky:_old_0] exited with code [0] via signal [SIGINT]",
}

func TestPM2LinesCountedOnce(t *testing.T) {
	recycles, online := 0, 0
	for _, l := range pm2Output {
		if pm2Recycle(l) {
			recycles++
		}
		if pm2Online(l) {
			online++
		}
	}
	if recycles != 1 || online != 1 {
		t.Errorf("counted %d recycles and %d online; want 1 and 1 (the streamed copies are not counted)", recycles, online)
	}
}

func TestMemdrainLogRecycles(t *testing.T) {
	lines := []string{
		`{"time":"2026-11-26T00:40:57.995313954Z","level":"WARN","msg":"over limit","master":6835,"worker":0,"pid":6862,"reason":"memory","memory":"59.6MiB"}`,
		`{"time":"2026-11-26T00:40:57.995425122Z","level":"INFO","msg":"replacing worker","master":6835,"worker":0,"pid":6862,"reason":"memory","memory":"59.6MiB"}`,
		`{"time":"2026-11-26T00:41:30.266725474Z","level":"INFO","msg":"draining","master":6835,"worker":0,"pid":9069,"reason":"signal","memory":"56.1MiB"}`,
		`{"time":"2026-11-26T00:41:31.000000000Z","level":"INFO","msg":"replacing worker","master":6835,"worker":1,"pid":9070,"reason":"max-requests"}`,
		`panic: not a log line`,
		`{"msg":`,
	}
	var got []time.Time
	for _, line := range lines {
		if l, ok := parseMemdrainLog(line); ok && l.isMemoryRecycle() {
			got = append(got, l.Time)
		}
	}
	want := time.Date(2026, 11, 26, 0, 40, 57, 995425122, time.UTC)
	if len(got) != 1 || !got[0].Equal(want) {
		t.Errorf("memory recycles at %v; want one at %v", got, want)
	}
}

func TestPM2Size(t *testing.T) {
	for n, want := range map[uint64]string{150 << 20: "150M", 1536 << 10: "1536K", 1000: "1000", 150<<20 + 1: "157286401"} {
		if got := pm2Size(n); got != want {
			t.Errorf("pm2Size(%d) = %q; want %q", n, got, want)
		}
	}
}

// The ecosystem file is JavaScript node loads, with the settings PM2
// reads.
func TestEcosystemFileLoadsInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	path, err := ecosystem{app: "/x/app.js", instances: 2, limit: 150 << 20, env: map[string]string{"PORT": "8123"}}.write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, "-e", "console.log(JSON.stringify(require(process.argv[1])))", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Apps []struct {
			Script           string            `json:"script"`
			ExecMode         string            `json:"exec_mode"`
			Instances        int               `json:"instances"`
			MaxMemoryRestart string            `json:"max_memory_restart"`
			Env              map[string]string `json:"env"`
			KillTimeout      *int              `json:"kill_timeout"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if len(got.Apps) != 1 {
		t.Fatalf("apps %s; want one", out)
	}
	a := got.Apps[0]
	if a.Script != "/x/app.js" || a.ExecMode != "cluster" || a.Instances != 2 || a.MaxMemoryRestart != "150M" || a.Env["PORT"] != "8123" || a.KillTimeout != nil {
		t.Errorf("app %s; want app.js in cluster mode, 2 instances, 150M, PORT 8123, PM2's default kill_timeout", out)
	}
}

// The committed lock pins the PM2 that package.json asks for.
func TestLockPinsPackageJSON(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("node", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	locked, err := lockedVersion(filepath.Join("node", "package-lock.json"), "pm2")
	if err != nil {
		t.Fatal(err)
	}
	if pkg.Dependencies["pm2"] != locked {
		t.Errorf("package.json asks for pm2 %q, package-lock.json pins %q; want the same exact version", pkg.Dependencies["pm2"], locked)
	}
}

func TestSteadyAndLowestSkipTheWarmup(t *testing.T) {
	// Ten 100 ms buckets of warm-up (zero), then 5, 7, 3, 9, 7.
	counts := append(make([]int, 10), 5, 7, 3, 9, 7)
	steady, lowest := steadyAndLowest(counts)
	if steady != 70 || lowest != 30 {
		t.Errorf("steady %v, lowest %v; want 70/s and 30/s", steady, lowest)
	}
	if s, l := steadyAndLowest(make([]int, 3)); s != 0 || l != 0 {
		t.Errorf("only warm-up: %v, %v; want 0, 0", s, l)
	}
}

func TestPM2Flags(t *testing.T) {
	o, err := parseFlags([]string{"-smoke", "-part", "pm2"})
	if err != nil {
		t.Fatal(err)
	}
	if o.pm2.WithPM2 || o.pm2.Limit != 72<<20 || o.pm2.Duration > 10*time.Second {
		t.Errorf("smoke: %+v; want memdrain only, 72Mi, a few seconds", o.pm2)
	}
	o, err = parseFlags([]string{"-part", "pm2"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.pm2.WithPM2 || o.pm2.Limit != 150<<20 || o.pm2.Duration != time.Minute || o.pm2.Workers != 2 || o.pm2.Clients != 32 {
		t.Errorf("full: %+v; want PM2 too, 150Mi, 60 s, 2 workers, 32 clients", o.pm2)
	}
	for _, args := range [][]string{{"-pm2-limit", "lots"}, {"-pm2-limit", "0"}, {"-pm2-duration", "1s"}} {
		if _, err := parseFlags(args); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("parseFlags(%q) = %v; want an error naming %s", args, err, args[0])
		}
	}
}

// The app leaks what it is told, in resident memory.
func TestAppLeaksResidentMemory(t *testing.T) {
	ctx := context.Background()
	node, skip, err := findNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	a, err := startAlone(ctx, node, map[string]string{"LEAK_KIB": "1024", "WORK_MS": "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := a.stopAlone(); err != nil {
			t.Error(err)
		}
	}()
	before, err := a.watch.figures()
	if err != nil {
		t.Fatal(err)
	}
	for range 64 {
		resp, err := http.Get(a.url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %s; want 200", resp.Status)
		}
	}
	after, err := a.watch.figures()
	if err != nil {
		t.Fatal(err)
	}
	if grew := after.WorkerPeak - before.WorkerPeak; grew < 48<<20 {
		t.Errorf("the app's RSS grew %d bytes over 64 requests leaking 1 MiB each; want at least 48 MiB", grew)
	}
}
