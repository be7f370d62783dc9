//go:build linux

// Command memdrain runs any HTTP server, in any language, as a set of
// worker processes behind its own proxy, and replaces a worker whose memory
// passes a limit without losing a request:
//
//	memdrain run --listen 127.0.0.1:8800 --workers 2 --max-memory 150Mi -- node server.js
//
// Each worker is the command, with PORT set to a loopback port of its own.
// memdrain listens on --listen and forwards every request to a ready
// worker. A replacement is started first; once it answers on its port, the
// old worker gets no new request, and it is stopped the moment its last
// request in flight ends. Run memdrain run -h for the flags.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:])
	case "status", "reload", "stop", "recycle":
		return controlCommand(args[0], args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	case shimCommand:
		return shim(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "memdrain: unknown command %q; accepted: run, status, reload, stop, recycle\n\n%s", args[0], usage)
	return 2
}

const usage = `usage: memdrain run [flags] -- COMMAND [ARGS...]
       memdrain status [--json] [--control PATH | --pid-file PATH]
       memdrain reload|stop [--control PATH | --pid-file PATH]
       memdrain recycle N [--control PATH | --pid-file PATH]

Runs COMMAND as --workers worker processes behind a proxy listening on
--listen, each with PORT set to a loopback port of its own, and replaces a
worker over its memory limit without losing a request.
Run "memdrain run -h" for the flags. status, reload, stop and recycle
speak to a running memdrain run (or a Go cluster with Config.Control)
over its control socket.
`
