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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
)

// The subject (bench/subject) is what the recycling, stress and scale
// parts run: built once, started as a cluster master on a free port of
// 127.0.0.1, configured by its MEMDRAIN_* environment, observed through
// the event lines it prints, and stopped by its pid.

// buildSubject builds the subject into dir and returns the binary's path.
func buildSubject(ctx context.Context, dir string) (string, error) {
	return buildPackage(ctx, dir, "", subjectPackage, "memdrain-subject")
}

// buildPackage builds the package at path pkg into dir/name, in the module
// at moduleDir ("" for the harness's own, which replaces memdrain with the
// checkout above it), and returns the binary's path.
func buildPackage(ctx context.Context, dir, moduleDir, pkg, name string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is needed to build %s: %w", pkg, err)
	}
	bin := filepath.Join(dir, name)
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, pkg)
	build.Dir = moduleDir
	out, err := build.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building %s (run the harness inside bench/): %w\n%s", pkg, err, out)
	}
	return bin, nil
}

const subjectPackage = "github.com/memdrain/memdrain/bench/subject"

// subjectSpec is how to start the subject.
type subjectSpec struct {
	addr          string
	workers       int
	limit         uint64
	checkInterval time.Duration // zero: the cluster's default
	drainTimeout  time.Duration // zero: the cluster's default
	args          []string      // the subject's flags: -baseline, -status-every, -tls, -h2c
}

// env returns the subject's environment: the harness's own, with the
// cluster's settings (cluster.FromEnv) after it, so they win.
func (s subjectSpec) env() []string {
	env := append(os.Environ(),
		"MEMDRAIN_LISTEN="+s.addr,
		"MEMDRAIN_WORKERS="+strconv.Itoa(s.workers),
		"MEMDRAIN_MAX_MEMORY="+strconv.FormatUint(s.limit, 10),
	)
	if s.checkInterval > 0 {
		env = append(env, "MEMDRAIN_CHECK_INTERVAL="+s.checkInterval.String())
	}
	if s.drainTimeout > 0 {
		env = append(env, "MEMDRAIN_DRAIN_TIMEOUT="+s.drainTimeout.String())
	}
	return env
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

// subjectProc is a running subject master.
type subjectProc struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed when the master has exited
	err    error         // the master's exit, once exited is closed
	read   chan struct{} // closed when its stdout ended: every worker has exited too
	stderr *os.File
}

// startSubject starts bin as s says, in a process group of its own, and
// hands every event it prints to handle, from one goroutine.
func startSubject(bin string, s subjectSpec, handle func(eventlog.Event)) (*subjectProc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stderr, err := os.CreateTemp("", "memdrain-subject-stderr-*")
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	os.Remove(stderr.Name()) // kept open; gone when closed
	cmd := exec.Command(bin, s.args...)
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = w, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		stderr.Close()
		return nil, fmt.Errorf("starting the subject: %w", err)
	}
	w.Close() // the master and its workers hold it now
	p := &subjectProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), read: make(chan struct{}), stderr: stderr}
	go func() {
		defer close(p.read)
		defer r.Close()
		eventlog.Read(r, handle)
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
func (p *subjectProc) stop(grace time.Duration) error {
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
		return fmt.Errorf("the subject's workers outlived their master (pid %d) by more than %v", p.pid, grace)
	}
	defer p.stderr.Close()
	if p.err != nil {
		return fmt.Errorf("the subject exited: %w%s", p.err, p.stderrTail())
	}
	return nil
}

// running reports an error if the master has exited.
func (p *subjectProc) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("the subject exited early: %v%s", p.err, p.stderrTail())
	default:
		return nil
	}
}

// stderrTail returns the end of what the subject wrote to stderr, for an
// error message.
func (p *subjectProc) stderrTail() string {
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
