package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// buildExample builds the example as a user runs it, with go build.
func buildExample(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command:", err)
	}
	bin := filepath.Join(t.TempDir(), "example")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// runExample runs the example's binary with env added to the environment,
// for at most a minute (a safety net: each run stops by itself).
func runExample(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// TestTheExampleReadsTheEnvironment: the README documents MEMDRAIN_*
// variables for cluster.FromEnv, and the example is where a user tries
// them first. A bad one is refused with FromEnv's error, a good one is
// used, and a flag given on the command line wins over it.
func TestTheExampleReadsTheEnvironment(t *testing.T) {
	bin := buildExample(t)
	serveBriefly := []string{"-addr", "127.0.0.1:0", "-load=false", "-duration", "100ms"}

	_, stderr, err := runExample(t, bin, []string{"MEMDRAIN_MAX_MEMORY=abc"}, serveBriefly...)
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "the example must fail: %v", err)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, stderr, `example: cluster: MEMDRAIN_MAX_MEMORY="abc": `)

	stdout, stderr, err := runExample(t, bin, []string{"MEMDRAIN_WORKERS=1", "MEMDRAIN_MAX_MEMORY=100Mi"}, serveBriefly...)
	require.NoError(t, err, "%s", stderr)
	assert.Contains(t, stdout, "memdrain example: 1 workers on http://127.0.0.1:0, recycled at 100MiB")

	stdout, stderr, err = runExample(t, bin, []string{"MEMDRAIN_WORKERS=1"}, append(serveBriefly, "-workers", "3")...)
	require.NoError(t, err, "%s", stderr)
	assert.Contains(t, stdout, "memdrain example: 3 workers on", "the flag wins")
}

// TestTheDemoRecyclesWithoutLosingARequest runs the demo as the README
// shows it, with a limit and a leak that bring a recycle within a second
// or two, waits for a worker's drain to end, stops the demo with Ctrl-C
// (SIGINT), and reads its summary: at least one recycle, and no request
// failed.
func TestTheDemoRecyclesWithoutLosingARequest(t *testing.T) {
	bin := buildExample(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // the load needs the port it serves on; the master listens on it again

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-addr", addr, "-max-memory", "32Mi", "-leak", "64")
	errOut, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	require.NoError(t, err)
	defer errOut.Close()
	cmd.Stderr = errOut // a file, read back while the demo may still write to it
	stderr := func() string { b, _ := os.ReadFile(errOut.Name()); return string(b) }
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "drained and exited") {
			break // a recycle's last step
		}
	}
	require.Contains(t, out.String(), "draining (memory)", "no recycle; stderr: %s", stderr())
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	require.NoError(t, cmd.Wait(), "stdout:\n%s\nstderr: %s", out.String(), stderr())
	summary := out.String()[strings.LastIndex(out.String(), "summary after"):]
	assert.Regexp(t, `failed +0\n`, summary)
	assert.Regexp(t, `recycles +[1-9]\d* \(`, summary)
	assert.Regexp(t, `requests +[1-9]`, summary)
}
