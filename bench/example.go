package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The example program (github.com/memdrain/memdrain/example) is what the
// recycling and supervision parts run: built once, started as a cluster
// master on a free port of 127.0.0.1, observed through its -events-json
// output, and stopped by its pid.

// buildExample builds the example into dir and returns the binary's path.
// It builds from the memdrain module's own directory, so the binary is
// exactly what `go run ./example` runs.
func buildExample(ctx context.Context, dir string) (string, error) {
	return buildPackage(ctx, dir, "example", "memdrain-example")
}

// buildPackage builds the memdrain module's package at pkg (a path inside
// the module) into dir/name and returns the binary's path.
func buildPackage(ctx context.Context, dir, pkg, name string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is needed to build %s: %w", pkg, err)
	}
	root, err := moduleRoot(ctx, goTool)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/memdrain/memdrain/"+pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s in %s: %w\n%s", pkg, root, err, out)
	}
	return bin, nil
}

// moduleRoot returns the directory of the memdrain module: bench replaces
// it with its parent directory.
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

// freePort returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// exampleProc is a running example master.
type exampleProc struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed when the master has exited
	err    error         // the master's exit, once exited is closed
	read   chan struct{} // closed when its stdout ended: every worker has exited too
	stderr *os.File
}

// startExample starts bin with args in a process group of its own and
// hands every event it prints to handle, from one goroutine.
func startExample(bin string, args []string, handle func(event)) (*exampleProc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stderr, err := os.CreateTemp("", "memdrain-example-stderr-*")
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	os.Remove(stderr.Name()) // kept open; gone when closed
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = w, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		stderr.Close()
		return nil, fmt.Errorf("starting the example: %w", err)
	}
	w.Close() // the master and its workers hold it now
	p := &exampleProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), read: make(chan struct{}), stderr: stderr}
	go func() {
		defer close(p.read)
		defer r.Close()
		readEvents(r, handle)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop asks the master to drain its workers and exit (SIGTERM to its
// process group), waits up to grace for it and its workers, then kills the
// group. The workers are in process groups of their own, but they drain
// and exit when their master dies (the parent-death signal and the end of
// their control socket); stop waits for that too, through the end of
// their shared stdout.
func (p *exampleProc) stop(grace time.Duration) error {
	syscall.Kill(-p.pid, syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	select {
	case <-p.exited:
	case <-deadline.C:
		syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.exited
	}
	select {
	case <-p.read:
	case <-time.After(grace):
		return fmt.Errorf("the example's workers outlived their master (pid %d) by more than %v", p.pid, grace)
	}
	defer p.stderr.Close()
	if p.err != nil {
		return fmt.Errorf("the example exited: %w%s", p.err, p.stderrTail())
	}
	return nil
}

// running reports an error if the master has exited.
func (p *exampleProc) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("the example exited early: %v%s", p.err, p.stderrTail())
	default:
		return nil
	}
}

// stderrTail returns the end of what the example wrote to stderr, for an
// error message.
func (p *exampleProc) stderrTail() string {
	const tail = 2000
	size, err := p.stderr.Seek(0, io.SeekEnd)
	if err != nil || size == 0 {
		return ""
	}
	b := make([]byte, min(size, tail))
	if _, err := p.stderr.ReadAt(b, size-int64(len(b))); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return "; its stderr ends:\n" + strings.TrimRight(string(b), "\n")
}
