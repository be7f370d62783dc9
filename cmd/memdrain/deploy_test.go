//go:build linux

package main

import (
	"path/filepath"
	"testing"

	"github.com/memdrain/memdrain/internal/testkit"
)

// The unit file in deploy/systemd passes systemd's own check, with no
// warning, once memdrain is at the path it names.
func TestSystemdUnitVerifies(t *testing.T) {
	testkit.VerifyUnit(t, filepath.Join("..", "..", "deploy", "systemd", "memdrain-run.service"), "/usr/local/bin/memdrain", binary)
}
