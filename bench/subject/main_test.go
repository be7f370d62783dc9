package main

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/memdrain/memdrain/bench/internal/eventlog"
	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/internal/gobuild"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestSubjectReportsEventLines: configured by MEMDRAIN_* alone, the
// subject prints its supervisor's events and its workers' status as event
// lines, and on SIGTERM drains its workers and exits 0.
func TestSubjectReportsEventLines(t *testing.T) {
	bin := gobuild.Here(t)
	cmd := gobuild.Command(t, bin, []string{"MEMDRAIN_LISTEN=127.0.0.1:0", "MEMDRAIN_WORKERS=1", "MEMDRAIN_MAX_MEMORY=100Mi"}, "-status-every", "20ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var events []eventlog.Event
	sent := false
	skipped := eventlog.Read(stdout, func(e eventlog.Event) {
		events = append(events, e)
		if !sent && e.Kind == eventlog.Status && len(e.Workers) == 1 && e.Workers[0].State == cluster.StateServing {
			cmd.Process.Signal(syscall.SIGTERM) // serving, and its status seen: enough
			sent = true
		}
	})
	err = cmd.Wait()
	if err != nil || !sent {
		t.Fatalf("exit: %v; SIGTERM sent: %v; events: %+v; stderr: %s", err, sent, events, stderr.String())
	}
	if skipped != 0 {
		t.Errorf("%d lines were not events", skipped)
	}
	var kinds []string
	for _, e := range events {
		if e.Kind != eventlog.Status {
			kinds = append(kinds, e.Kind)
		}
	}
	if want := "started ready draining exited-planned"; strings.Join(kinds, " ") != want {
		t.Errorf("events %q, want %q", kinds, want)
	}
}

// TestSubjectRefusesBadSettings: a bad variable, or a baseline without a
// limit to shut down at, is an error naming it, and exit status 1.
func TestSubjectRefusesBadSettings(t *testing.T) {
	bin := gobuild.Here(t)
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"MEMDRAIN_LISTEN=127.0.0.1:0", "MEMDRAIN_WORKERS=two"}, nil, `subject: cluster: MEMDRAIN_WORKERS="two": `},
		{[]string{"MEMDRAIN_LISTEN=127.0.0.1:0", "MEMDRAIN_MAX_MEMORY=0"}, []string{"-baseline"}, "subject: -baseline needs MEMDRAIN_MAX_MEMORY"},
		{[]string{"MEMDRAIN_LISTEN=127.0.0.1:0"}, []string{"-status-every", "-1s"}, "subject: -status-every is -1s"},
	} {
		out, err := gobuild.Command(t, bin, tc.env, tc.args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v %v: %v, output %q; want exit status 1 and %q", tc.env, tc.args, err, out, tc.want)
		}
	}
}
