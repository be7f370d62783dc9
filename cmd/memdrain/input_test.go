//go:build linux

package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

// Bad input gets a message that names the flag or the command, and
// exit status 2, before anything starts.
func TestBadInputs(t *testing.T) {
	need(t, "node")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no dashes", []string{"run", "node", "app.js"}, `no "--" before the command`},
		{"no command", []string{"run", "--"}, `no command after "--"`},
		{"not found", []string{"run", "--", "no-such-command-memdrain"}, `the command "no-such-command-memdrain" cannot be run: not found in $PATH`},
		{"not executable", []string{"run", "--", "./app.js"}, `the command "./app.js" cannot be run: not executable`},
		{"bad size", []string{"run", "--max-memory", "12 parsecs", "--", "node", "app.js"}, `invalid value "12 parsecs" for flag -max-memory`},
		{"size without unit", []string{"run", "--max-memory", "150", "--", "node", "app.js"}, `did you mean "150Mi"?`},
		{"bad duration", []string{"run", "--drain-timeout", "30", "--", "node", "app.js"}, `invalid value "30" for flag -drain-timeout: a number without a unit; did you mean "30s"?`},
		{"bad signal", []string{"run", "--stop-signal", "STOP", "--", "node", "app.js"}, `invalid value "STOP" for flag -stop-signal: accepted: TERM, INT`},
		{"hard below max", []string{"run", "--max-memory", "200Mi", "--hard-memory", "100Mi", "--", "node", "app.js"}, `--hard-memory is 100MiB; accepted:`},
		{"pid file in no directory", []string{"run", "--pid-file", "/nonexistent-memdrain/app.pid", "--", "node", "app.js"}, "--pid-file /nonexistent-memdrain/app.pid: the directory /nonexistent-memdrain does not exist"},
		{"pid file a directory", []string{"run", "--pid-file", "/tmp/", "--", "node", "app.js"}, `invalid value "/tmp/" for flag -pid-file: accepted: the path of a file`},
		{"metrics address", []string{"run", "--metrics", "nonsense", "--", "node", "app.js"}, "--metrics nonsense: listen tcp: address nonsense: missing port in address"},
		{"port in use", []string{"run", "--listen", held.Addr().String(), "--", "node", "app.js"}, "--listen " + held.Addr().String() + ": listen tcp " + held.Addr().String() + ": bind: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeApp(t, "app.js", leakyNode)
			m := launch(t, dir, tc.args...)
			if code := m.wait(t, 10*time.Second); code != 2 {
				t.Errorf("exit status %d; want 2", code)
			}
			if out := m.output(); !strings.Contains(out, tc.want) {
				t.Errorf("output:\n%s\nwant it to contain %q", out, tc.want)
			}
		})
	}
}

// A bad variable of the command's own is named once, with what is
// accepted: runCommand adds "memdrain: ", and parseOptions none of its own.
func TestBadVariables(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"MEMDRAIN_QUEUE_LIMIT", "abc", `MEMDRAIN_QUEUE_LIMIT="abc": accepted: a whole number`},
		{"MEMDRAIN_PID_FILE", "abc/", `MEMDRAIN_PID_FILE="abc/": accepted: the path of a file`},
	} {
		_, err := parseOptions([]string{"--", "node"}, func(k string) (string, bool) {
			return tc.value, k == tc.name
		})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v; want an error starting %q", tc.name, tc.value, err, tc.want)
		}
	}
}

// An app that never listens on PORT: memdrain says so, naming the port.
func TestAppThatNeverListens(t *testing.T) {
	need(t, "node")
	dir := writeApp(t, "app.js", `setInterval(() => {}, 1000);`)
	m := start(t, dir, []string{"--workers", "1", "--ready-timeout", "1s"}, "node", "app.js")
	m.waitUntil(t, 20*time.Second, "message", func(logs []logLine, _ string) bool {
		for _, l := range logs {
			if strings.HasPrefix(l.Msg, "worker 0 did not listen on PORT=") && strings.HasSuffix(l.Msg, " within 1s; does the app read PORT?") {
				return true
			}
		}
		return false
	})
	m.stop(t)
}
