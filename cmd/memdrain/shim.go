//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The shim is the worker process the supervisor sees: memdrain itself,
// re-executed, in a process group of its own (its pgid is its pid), running
// the app as its child in that group. It exists so that nothing the app
// starts outlives memdrain: the kernel's parent-death signal reaches only a
// direct child, and the shim, that child, answers it by killing its whole
// group, grandchildren included (an "sh -c" that does not exec, npm and
// the node it runs). The master kills the same group when it kills a
// worker, and again when one exits.
//
// It also prefixes every line the app writes with "[worker N pid P] ",
// and exits with the app's status.

// shimCommand is the hidden subcommand that runs a shim.
const shimCommand = "shim"

// lifelineFD is the read end of a pipe whose write end only the master
// holds: its end of file means the master is gone, however it died.
const lifelineFD = 3

// drainOutputFor bounds the wait for the app's last output once it has
// exited: a process it left behind may hold its stdout open.
const drainOutputFor = 200 * time.Millisecond

// shim runs "shim WORKER STOPSIGNAL -- COMMAND [ARGS...]".
func shim(args []string) int {
	byHand := func() int {
		fmt.Fprintln(os.Stderr, "memdrain: the shim is started by memdrain run, not by hand")
		return 2
	}
	if len(args) < 4 || args[2] != "--" {
		return byHand()
	}
	worker, err := strconv.Atoi(args[0])
	if err != nil {
		return byHand()
	}
	stopSignal, err := strconv.Atoi(args[1])
	if err != nil {
		return byHand()
	}
	args = append(args[:1:1], args[2:]...) // WORKER -- COMMAND...
	master := os.Getppid()
	// Everything in the group goes, this shim included: SIGKILL cannot be
	// caught, and the shim has nothing to save.
	killGroup := func() { syscall.Kill(0, syscall.SIGKILL) }

	// Signals sent to the group (the stop signal, which the app gets too)
	// are not for the shim; the parent-death signal is, and the parent
	// has changed by the time it comes.
	caught := make(chan os.Signal, 8)
	signal.Notify(caught, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for range caught {
			if os.Getppid() != master {
				killGroup()
			}
		}
	}()
	syscall.CloseOnExec(lifelineFD) // the app must not hold it
	lifeline := os.NewFile(lifelineFD, "memdrain-lifeline")
	go func() {
		io.Copy(io.Discard, lifeline)
		killGroup()
	}()
	if os.Getppid() != master { // died before the watchers were up
		killGroup()
	}

	prefix := fmt.Sprintf("[worker %d pid %d] ", worker, os.Getpid())
	cmd := exec.Command(args[2], args[3:]...)
	var copiers sync.WaitGroup
	var readers []*os.File
	for _, out := range []*os.File{os.Stdout, os.Stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%smemdrain: %v\n", prefix, err)
			return 127
		}
		defer w.Close()
		readers = append(readers, r)
		if out == os.Stdout {
			cmd.Stdout = w
		} else {
			cmd.Stderr = w
		}
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			prefixLines(out, r, prefix)
		}()
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "%smemdrain: starting the command: %v\n", prefix, err)
		return 127
	}
	cmd.Stdout.(*os.File).Close()
	cmd.Stderr.(*os.File).Close()
	state, err := cmd.Process.Wait()
	for _, r := range readers {
		r.SetReadDeadline(time.Now().Add(drainOutputFor))
	}
	copiers.Wait()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%smemdrain: waiting for the command: %v\n", prefix, err)
		return 127
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if int(ws.Signal()) == stopSignal {
			return 0 // stopped as asked: an app without a handler for it dies of it
		}
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

// prefixLines copies r to w, each line prefixed, one write a line so that
// lines of different workers do not interleave.
func prefixLines(w io.Writer, r io.Reader, prefix string) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line bytes.Buffer
	atStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			line.Reset()
			if atStart {
				line.WriteString(prefix)
			}
			line.Write(chunk)
			atStart = chunk[len(chunk)-1] == '\n'
			if !atStart && err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				line.WriteByte('\n') // the last line had no end
			}
			w.Write(line.Bytes())
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
