package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// VerifyUnit checks the systemd unit file at path with systemd-analyze
// verify, its binary at installed (such as /usr/local/bin/memdrain)
// replaced by bin, which verify requires to exist. The units beside it
// are copied along, for the ones it names (its .socket). Any warning fails
// t; without systemd-analyze, t is skipped.
func VerifyUnit(t *testing.T, path, installed, bin string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not found in PATH; .ci/test installs Debian's systemd when it is missing")
	}
	unit, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+installed+" ") {
		t.Fatalf("%s does not start %s:\n%s", path, installed, unit)
	}
	dir := t.TempDir()
	siblings, err := filepath.Glob(filepath.Join(filepath.Dir(path), "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range siblings {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// verify reads the unit's type from its name: keep it.
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(strings.ReplaceAll(string(text), installed+" ", bin+" ")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copied := filepath.Join(dir, filepath.Base(path))
	out, err := exec.Command("systemd-analyze", "verify", copied).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(path), err, out)
	}
}
