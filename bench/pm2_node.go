package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The Node side of the pm2 part: node and npm found on $PATH, PM2
// installed by `npm ci` from bench/node's committed package-lock.json
// into bench/node/node_modules (git-ignored), and the ecosystem file PM2
// starts the app from.

// nodeEnv is what the pm2 part runs the app with.
type nodeEnv struct {
	node    string // the node binary
	dir     string // bench/node: app.js, package.json, package-lock.json
	app     string // dir/app.js
	version string // node --version
}

// findNode finds node on $PATH and the app in the memdrain module's
// bench/node. It returns a reason to skip the part when node is missing.
func findNode(ctx context.Context) (*nodeEnv, string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "node is not installed (not found in $PATH): the pm2 part runs a Node app", nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, "", fmt.Errorf("the go tool is needed to find bench/node: %w", err)
	}
	root, err := moduleRoot(ctx, goTool)
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(root, "bench", "node")
	e := &nodeEnv{node: node, dir: dir, app: filepath.Join(dir, "app.js")}
	if _, err := os.Stat(e.app); err != nil {
		return nil, "", fmt.Errorf("the pm2 part's app: %w", err)
	}
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return nil, fmt.Sprintf("%s --version failed (%v): node does not run here", node, err), nil
	}
	e.version = strings.TrimSpace(string(out))
	return e, "", nil
}

// pm2Bin returns the path of PM2's command-line script, which node runs.
func (e *nodeEnv) pm2Bin() string { return filepath.Join(e.dir, "node_modules", "pm2", "bin", "pm2") }

// installPM2 makes sure node_modules holds the PM2 that package-lock.json
// pins: `npm ci` unless it is there already. It returns PM2's version, or
// a reason to skip (npm missing, npm ci failed) and no error.
func (e *nodeEnv) installPM2(ctx context.Context, prog *progress) (version, skip string) {
	want, err := lockedVersion(filepath.Join(e.dir, "package-lock.json"), "pm2")
	if err != nil {
		return "", err.Error()
	}
	if have, err := installedVersion(filepath.Join(e.dir, "node_modules", "pm2", "package.json")); err == nil && have == want {
		return have, ""
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "npm is not installed (not found in $PATH): the pm2 part installs PM2 with npm ci"
	}
	prog.note("pm2: installing PM2 %s with npm ci in %s", want, e.dir)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = e.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("npm ci in %s failed (%v): %s", e.dir, err, lastLines(string(out), 5))
	}
	have, err := installedVersion(filepath.Join(e.dir, "node_modules", "pm2", "package.json"))
	if err != nil {
		return "", fmt.Sprintf("npm ci in %s did not install PM2: %v", e.dir, err)
	}
	return have, ""
}

// lockedVersion returns the version package-lock.json pins for name.
func lockedVersion(lockFile, name string) (string, error) {
	b, err := os.ReadFile(lockFile)
	if err != nil {
		return "", err
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		return "", fmt.Errorf("%s: %w", lockFile, err)
	}
	v := lock.Packages["node_modules/"+name].Version
	if v == "" {
		return "", fmt.Errorf("%s pins no version of %s", lockFile, name)
	}
	return v, nil
}

// installedVersion returns the version in an installed package's
// package.json.
func installedVersion(packageJSON string) (string, error) {
	b, err := os.ReadFile(packageJSON)
	if err != nil {
		return "", err
	}
	var p struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Version == "" {
		return "", fmt.Errorf("%s: no version (%v)", packageJSON, err)
	}
	return p.Version, nil
}

// lastLines returns the last n lines of s, on one line.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " / ")
}

// ecosystem is the ecosystem.config.js the part starts PM2 with: the app
// in cluster mode, restarted over maxMemory by PM2's max_memory_restart,
// its other settings PM2's defaults (kill_timeout 1600 ms).
type ecosystem struct {
	app       string
	instances int
	limit     uint64
	env       map[string]string
}

// pm2Size writes a byte count as max_memory_restart takes it: "150M"
// (PM2's M is MiB, its K KiB), or the bare number of bytes.
func pm2Size(n uint64) string {
	switch {
	case n > 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n > 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprint(n)
}

// write writes the file into dir and returns its path.
func (e ecosystem) write(dir string) (string, error) {
	if e.instances < 1 || e.limit == 0 {
		return "", errors.New("ecosystem: instances and limit must be set")
	}
	app := map[string]any{
		"name":               "memdrain-bench",
		"script":             e.app,
		"exec_mode":          "cluster",
		"instances":          e.instances,
		"max_memory_restart": pm2Size(e.limit),
		"env":                e.env,
	}
	b, err := json.MarshalIndent(map[string]any{"apps": []any{app}}, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "ecosystem.config.js")
	// JSON is a JavaScript expression.
	return path, os.WriteFile(path, append(append([]byte("module.exports = "), b...), ";\n"...), 0o644)
}

// moduleRoot returns the directory of the memdrain module that the
// harness's go.mod replaces it with: the checkout above bench/.
func moduleRoot(ctx context.Context, goTool string) (string, error) {
	out, err := exec.CommandContext(ctx, goTool, "list", "-m", "-f", "{{.Dir}}", "github.com/memdrain/memdrain").Output()
	if err != nil {
		return "", fmt.Errorf("finding the memdrain module (run the harness inside bench/): %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("finding the memdrain module: go list printed no directory (run the harness inside bench/)")
	}
	return dir, nil
}
