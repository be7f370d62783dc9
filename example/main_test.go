package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/memdrain/memdrain/internal/gobuild"
	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runExample runs the example's binary with env added to the environment.
func runExample(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := gobuild.Command(t, bin, env, args...)
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
	bin := gobuild.Here(t)
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
	bin := gobuild.Here(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // the load needs the port it serves on; the master listens on it again

	cmd := gobuild.Command(t, bin, nil, "-addr", addr, "-max-memory", "32Mi", "-leak", "64")
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

// The example's unit file in deploy/systemd passes systemd's own check,
// with no warning, once the example is at the path it names.
func TestSystemdUnitVerifies(t *testing.T) {
	testkit.VerifyUnit(t, filepath.Join("..", "deploy", "systemd", "memdrain-example.service"), "/usr/local/bin/memdrain-example", gobuild.Here(t))
}
