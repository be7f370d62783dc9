//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/memory"
)

// controlWait bounds a command's exchange with the master.
const controlWait = 10 * time.Second

// defaultControl is the control socket when none is named: beside the pid
// file if there is one, else $XDG_RUNTIME_DIR/memdrain.sock, or none.
func defaultControl(pidFile string, lookup func(string) (string, bool)) string {
	if pidFile != "" {
		return controlBesidePidFile(pidFile)
	}
	if dir, ok := lookup("XDG_RUNTIME_DIR"); ok && dir != "" {
		return filepath.Join(dir, "memdrain.sock")
	}
	return ""
}

// controlPath is the socket a control command speaks to, chosen as
// memdrain run chooses it, so that the same flags and environment find
// it: --control, else MEMDRAIN_CONTROL, else beside --pid-file (or
// MEMDRAIN_PID_FILE), else in XDG_RUNTIME_DIR (see defaultControl). A
// named socket wins over one derived from the pid file.
func controlPath(control, pidFile string, lookup func(string) (string, bool)) string {
	env := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v) // as envvar.Read reads memdrain run's
	}
	switch {
	case control != "":
		return control
	case env("MEMDRAIN_CONTROL") != "":
		return env("MEMDRAIN_CONTROL")
	case pidFile == "":
		pidFile = env("MEMDRAIN_PID_FILE")
	}
	return defaultControl(pidFile, lookup)
}

// controlCommand is memdrain status, reload, stop and recycle: one request
// to the control socket of a running master. Its exit code is 0 on
// success, 2 for bad input, 1 when the master cannot be reached or refuses.
func controlCommand(name string, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("memdrain "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	control := fs.String("control", "", "the master's control socket (MEMDRAIN_CONTROL; default: beside --pid-file, else $XDG_RUNTIME_DIR/memdrain.sock)")
	pidFile := fs.String("pid-file", "", "the master's --pid-file, beside which its control socket is (MEMDRAIN_PID_FILE)")
	asJSON := false
	if name == "status" {
		fs.BoolVar(&asJSON, "json", false, "print the status as JSON, for scripts")
	}
	usageLine := map[string]string{
		"status":  "memdrain status [--json] [--control PATH | --pid-file PATH]",
		"reload":  "memdrain reload [--control PATH | --pid-file PATH]",
		"stop":    "memdrain stop [--control PATH | --pid-file PATH]",
		"recycle": "memdrain recycle N [--control PATH | --pid-file PATH]",
	}[name]
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "memdrain %s: %s\nusage: %s\n", name, fmt.Sprintf(format, a...), usageLine)
		return 2
	}
	// Flags may come before or after recycle's slot.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stdout, "usage: %s\n", usageLine)
				return 0
			}
			return bad("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	req := cluster.ControlRequest{Cmd: name}
	switch {
	case name == "recycle" && len(positional) != 1:
		return bad("needs one worker slot, got %d arguments", len(positional))
	case name == "recycle":
		n, err := strconv.Atoi(positional[0])
		if err != nil || n < 0 {
			return bad("the worker slot %q is not a whole number ≥ 0 (see memdrain status)", positional[0])
		}
		req.Worker = &n
	case len(positional) > 0:
		return bad("%q is not a flag", positional[0])
	}

	path := controlPath(*control, *pidFile, lookup)
	if path == "" {
		fmt.Fprintf(stderr, "memdrain %s: no control socket named: pass --control PATH (the path memdrain run printed at start), or --pid-file PATH (memdrain run's), or set MEMDRAIN_CONTROL, MEMDRAIN_PID_FILE or XDG_RUNTIME_DIR\n", name)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlWait)
	defer cancel()
	reply, err := cluster.Control(ctx, path, req)
	if err != nil {
		fmt.Fprintf(stderr, "memdrain %s: %s\n", name, unreachable(path, err))
		return 1
	}
	if reply.Error != "" {
		fmt.Fprintf(stderr, "memdrain %s: the master at %s refused: %s\n", name, path, reply.Error)
		return 1
	}
	switch {
	case name == "status" && asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(reply.Status)
	case name == "status":
		printStatus(stdout, reply.Status, time.Now())
	default:
		fmt.Fprintf(stdout, "memdrain %s: asked of the master at %s\n", name, path)
	}
	return 0
}

// unreachable says why the control socket at path could not be reached,
// and what to do.
func unreachable(path string, err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Sprintf("no control socket at %s: is memdrain run (or the cluster) running with --control %s (Config.Control)? Name another with --control PATH or MEMDRAIN_CONTROL", path, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing listens at %s: the master that made it is gone", path)
	case errors.Is(err, syscall.EACCES):
		return fmt.Sprintf("the control socket %s belongs to another user (mode 0600)", path)
	}
	return fmt.Sprintf("control socket %s: %v", path, err)
}

// printStatus writes st as a table, one line a worker process.
func printStatus(w io.Writer, st *cluster.ControlStatus, now time.Time) {
	if st == nil {
		return
	}
	limit := "no limit"
	if st.MaxMemory > 0 {
		limit = memory.FormatSize(st.MaxMemory)
	}
	fmt.Fprintf(w, "master %d: %d workers, max memory %s\n", st.Pid, st.Workers, limit)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tSTATE\tMEMORY\tIN FLIGHT\tSERVED\tAGE\tRESTARTS\tLAST RECYCLE")
	for _, p := range st.Processes {
		mem := memory.FormatSize(p.Memory)
		if st.MaxMemory > 0 {
			mem = fmt.Sprintf("%s / %s (%d%%)", mem, limit, p.Memory*100/st.MaxMemory)
		}
		reason := "-"
		if p.Reason != 0 {
			reason = p.Reason.String()
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\t%s\t%d\t%s\n", p.Worker, p.Pid, p.State, mem, p.InFlight, p.Served,
			now.Sub(p.Started).Round(time.Second), p.Restarts, reason)
	}
	tw.Flush()
}
