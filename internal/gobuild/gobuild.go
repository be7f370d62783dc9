// Package gobuild runs a test's own main package as its users do: built
// with go build, started as a process of its own. The tests of the example
// and of the benchmark subject use it.
package gobuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Here builds the main package in the test's working directory into a
// directory removed after the test, and returns the binary's path. Without
// the go command the test is skipped; a failed build fails it.
func Here(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command:", err)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(mustGetwd(t)))
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Command returns a command that runs bin with args, in the test's
// environment with env after it (so env wins), and is killed after a
// minute: a safety net for a run that should end by itself long before.
func Command(t testing.TB, bin string, env []string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

func mustGetwd(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
