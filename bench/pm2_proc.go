package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// supervised is a process the pm2 part started (memdrain, PM2's daemon
// or the app alone) in a process group of its own, its output read line
// by line, its tree watched.
type supervised struct {
	name   string
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed when it has exited
	err    error         // its exit, once exited is closed
	read   sync.WaitGroup
	watch  *treeWatch
	// settle is how long the processes of its tree may take to end after
	// it exited before they count as left behind: afterExit.
	settle time.Duration

	mu   sync.Mutex
	tail []string // its last lines of output, for an error message
}

// outputLine is one line of a supervised process's output, stamped when
// the harness read it.
type outputLine struct {
	T      time.Time
	Stderr bool
	Text   string
}

// tailLines is how many lines of output an error message shows.
const tailLines = 20

// startSupervised starts cmd in a process group of its own and hands every
// line it writes to handle, from one goroutine per stream. The tree under
// it is watched with layout.
func startSupervised(name string, cmd *exec.Cmd, layout treeLayout, limit uint64, handle func(outputLine)) (*supervised, error) {
	// Pipes of the harness's own rather than cmd's: the process's exit
	// must not wait for the readers, whom a leftover grandchild holding
	// the pipe would keep reading.
	stdout, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stderr, errW, err := os.Pipe()
	if err != nil {
		stdout.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	outW.Close() // the process and its tree hold them now
	errW.Close()
	if err != nil {
		stdout.Close()
		stderr.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s := &supervised{name: name, cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), settle: afterExit}
	for _, r := range []struct {
		rd     *os.File
		stderr bool
	}{{stdout, false}, {stderr, true}} {
		s.read.Add(1)
		go func() {
			defer s.read.Done()
			defer r.rd.Close()
			sc := bufio.NewScanner(r.rd)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				l := outputLine{T: time.Now(), Stderr: r.stderr, Text: sc.Text()}
				s.mu.Lock()
				s.tail = append(s.tail, l.Text)
				if len(s.tail) > tailLines {
					s.tail = s.tail[len(s.tail)-tailLines:]
				}
				s.mu.Unlock()
				if handle != nil {
					handle(l)
				}
			}
			io.Copy(io.Discard, r.rd) // a line too long: keep the pipe flowing
		}()
	}
	s.watch = watchTree(s.pid, layout, limit)
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// running returns an error if the process has exited.
func (s *supervised) running() error {
	select {
	case <-s.exited:
		return fmt.Errorf("%s exited early: %v%s", s.name, s.err, s.outputTail())
	default:
		return nil
	}
}

// outputTail returns its last lines of output, for an error message.
func (s *supervised) outputTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tail) == 0 {
		return ""
	}
	return "; its output ends:\n" + strings.Join(s.tail, "\n")
}

// afterExit is how long the processes of a supervisor's tree may take to
// end after the supervisor exited before they count as left behind.
const afterExit = 5 * time.Second

// stop ends the process: ask (a function that asks it to stop, such as a
// signal), then up to grace for it to exit, then SIGKILL to its process
// group. Whatever of its tree still runs afterExit later is killed by pid
// and reported. It returns the process's exit error, or the survivors.
func (s *supervised) stop(ask func() error, grace time.Duration) (exit error, err error) {
	askErr := ask()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-s.exited:
	case <-timer.C:
		syscall.Kill(-s.pid, syscall.SIGKILL)
		<-s.exited
		askErr = fmt.Errorf("%s did not exit within %v of being asked to stop (%v); killed", s.name, grace, askErr)
	}
	s.watch.end()
	s.watch.settle(s.settle)
	if err := s.watch.kill(); err != nil {
		return s.err, fmt.Errorf("%s: %w", s.name, err)
	}
	// Every process that held the output is gone now: the readers end.
	read := make(chan struct{})
	go func() {
		s.read.Wait()
		close(read)
	}()
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		return s.err, fmt.Errorf("%s: a process the harness did not see in its tree still holds its output 5 s after it exited", s.name)
	}
	return s.err, askErr
}

// signal returns an ask for stop that sends sig to the process.
func (s *supervised) signal(sig syscall.Signal) func() error {
	return func() error { return syscall.Kill(s.pid, sig) }
}

// waitFor waits until ready returns nil, polling it every poll, for at
// most timeout, or until the process exits or ctx ends.
func (s *supervised) waitFor(ctx context.Context, what string, timeout, poll time.Duration, ready func() error) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	var err error
	for {
		if err = ready(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.exited:
			return s.running()
		case <-deadline.C:
			return fmt.Errorf("%s: %s not within %v: %v%s", s.name, what, timeout, err, s.outputTail())
		case <-ticker.C:
		}
	}
}
