//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/internal/envvar"
	"github.com/memdrain/memdrain/memory"
)

// options is what memdrain run was asked to do: the flags, over their
// MEMDRAIN_* variables, over the defaults.
type options struct {
	listen         []string
	command        []string
	readyPath      string
	healthPath     string
	healthInterval time.Duration
	healthFailures int
	stopSignal     syscall.Signal
	queueTimeout   time.Duration
	queueLimit     int
	requestTimeout time.Duration
	logFormat      string
	metrics        string // the address of /metrics; "" for none
	pidFile        string // "" for none
	// memoryGiven: a flag or variable set MaxMemory, HardMemory or
	// TotalMemory, even to 0; otherwise MaxMemory comes from the cgroup's
	// limit (containerMaxMemory).
	memoryGiven bool
	// listenGiven: --listen or MEMDRAIN_LISTEN named the addresses; under
	// systemd's socket activation they then order the passed sockets,
	// which are otherwise all served (see listen).
	listenGiven bool
	controlSet  bool // --control was given, perhaps empty: no default
	// cluster holds the supervisor's settings; its Listen is moved to
	// listen, which the proxy serves.
	cluster cluster.Config
}

// The command's own defaults; the supervisor's are cluster's.
const (
	defaultListen         = ":8080"
	defaultHealthInterval = 5 * time.Second
	defaultHealthFailures = 3
	defaultQueueTimeout   = 30 * time.Second
	defaultQueueLimit     = 1024
)

// parseOptions reads memdrain run's arguments: flags, then "--", then the
// command. The environment gives what the flags do not.
func parseOptions(args []string, lookup func(string) (string, bool)) (options, error) {
	dash := -1
	for i, a := range args {
		if a == "--" {
			dash = i
			break
		}
	}
	if dash < 0 {
		if len(args) == 1 && isHelp(args[0]) {
			return options{}, flag.ErrHelp
		}
		return options{}, errors.New(`no "--" before the command; usage: memdrain run [flags] -- COMMAND [ARGS...]`)
	}
	o := options{
		healthInterval: defaultHealthInterval,
		healthFailures: defaultHealthFailures,
		stopSignal:     syscall.SIGTERM,
		queueTimeout:   defaultQueueTimeout,
		queueLimit:     defaultQueueLimit,
		logFormat:      "text",
	}
	cfg, err := cluster.FromEnv(cluster.Config{})
	if err != nil {
		return o, err
	}
	o.listen, cfg.Listen = cfg.Listen, nil
	o.cluster = cfg
	// No prefix: the caller's "memdrain: " says whose variables they are.
	if o, err = envvar.Read("", o, commandVars, lookup); err != nil {
		return o, err
	}
	fs := newFlagSet(&o)
	if err := fs.Parse(args[:dash]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%q before \"--\" is not a flag; usage: memdrain run [flags] -- COMMAND [ARGS...]", fs.Arg(0))
	}
	for _, name := range []string{"MEMDRAIN_MAX_MEMORY", "MEMDRAIN_HARD_MEMORY", "MEMDRAIN_TOTAL_MEMORY"} {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			o.memoryGiven = true
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-memory", "hard-memory", "total-memory":
			o.memoryGiven = true
		}
	})
	o.command = args[dash+1:]
	if len(o.command) == 0 || o.command[0] == "" {
		return o, errors.New(`no command after "--"; usage: memdrain run [flags] -- COMMAND [ARGS...]`)
	}
	if o.listenGiven = len(o.listen) > 0; !o.listenGiven {
		o.listen = []string{defaultListen}
	}
	if !o.controlSet && o.cluster.Control == "" {
		o.cluster.Control = defaultControl(o.pidFile, lookup)
	}
	return o, nil
}

func isHelp(a string) bool {
	switch a {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// newFlagSet defines every flag of memdrain run over o. Each flag's usage
// names its variable.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("memdrain run", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, and printed once by the caller
	c := &o.cluster
	listenSet := false
	fs.Func("listen", `address to serve, repeatable: "host:port" or "unix:/path" (MEMDRAIN_LISTEN, comma-separated; default `+defaultListen+`)`, func(v string) error {
		if !listenSet { // the first flag replaces the variable's list
			o.listen, listenSet = nil, true
		}
		o.listen = append(o.listen, v)
		return nil
	})
	fs.Func("control", `the control socket, for memdrain status, reload, stop and recycle; "" for none (MEMDRAIN_CONTROL; default: beside --pid-file, else $XDG_RUNTIME_DIR/memdrain.sock, else none)`, func(v string) error {
		c.Control, o.controlSet = v, true
		return nil
	})
	stringFlag(fs, "pid-file", &o.pidFile, checkPidFile, "write memdrain's pid to this file while it runs; the control socket defaults to the same path with .sock for .pid (MEMDRAIN_PID_FILE; default none)")
	stringFlag(fs, "metrics", &o.metrics, anyString, `serve Prometheus metrics at /metrics on this address: "host:port" such as 127.0.0.1:9100, or "unix:/path" (MEMDRAIN_METRICS; default none: nothing listens)`)
	intFlag(fs, "workers", &c.Workers, "worker processes (MEMDRAIN_WORKERS; default: one per CPU)")
	sizeFlag(fs, "max-memory", &c.MaxMemory, "replace a worker whose process tree uses more, such as 150Mi or 400000000 (MEMDRAIN_MAX_MEMORY; default: in a cgroup with a memory limit, 90% of it split across the workers and one replacement, else 0, no limit)")
	sizeFlag(fs, "total-memory", &c.TotalMemory, "replace the largest worker while all together use more (MEMDRAIN_TOTAL_MEMORY; default 0, no budget)")
	sizeFlag(fs, "hard-memory", &c.HardMemory, "drain a worker past this at once, even before its replacement is ready (MEMDRAIN_HARD_MEMORY; default --max-memory × 1.25)")
	intFlag(fs, "max-requests", &c.MaxRequests, "replace a worker after this many requests (MEMDRAIN_MAX_REQUESTS; default 0, off)")
	intFlag(fs, "max-requests-jitter", &c.MaxRequestsJitter, "add up to this many to each worker's --max-requests (MEMDRAIN_MAX_REQUESTS_JITTER)")
	durationFlag(fs, "max-age", &c.MaxAge, "replace a worker after it lived this long (MEMDRAIN_MAX_AGE; default 0, off)")
	durationFlag(fs, "max-age-jitter", &c.MaxAgeJitter, "add up to this much to each worker's --max-age (MEMDRAIN_MAX_AGE_JITTER)")
	durationFlag(fs, "check-interval", &c.CheckInterval, "longest time between two memory samples of a worker (MEMDRAIN_CHECK_INTERVAL; default 1s)")
	fs.Func("sampler", "memory figure: rss, or anon (resident anonymous memory: heap and stacks, not shared code) (MEMDRAIN_SAMPLER; default rss)", func(v string) error {
		if strings.EqualFold(strings.TrimSpace(v), "go") {
			return errors.New(`accepted: rss or anon; "go" measures only memdrain itself`)
		}
		s, err := memory.SamplerByName(v)
		if err != nil {
			return err
		}
		c.Sampler = s
		return nil
	})
	stringFlag(fs, "ready-path", &o.readyPath, checkPath, "a worker is ready when this path answers 2xx on its PORT (MEMDRAIN_READY_PATH; default: when its PORT accepts a connection)")
	durationFlag(fs, "ready-timeout", &c.ReadyTimeout, "a new worker must be ready within this (MEMDRAIN_READY_TIMEOUT; default 30s)")
	durationFlag(fs, "drain-timeout", &c.DrainTimeout, "longest wait for a replaced worker's requests in flight (MEMDRAIN_DRAIN_TIMEOUT; default 30s)")
	durationFlag(fs, "kill-grace", &c.KillGrace, "SIGKILL a worker this long after --stop-signal (MEMDRAIN_KILL_GRACE; default 5s)")
	fs.Func("stop-signal", "signal that stops a drained worker: TERM, INT, QUIT, HUP, USR1 or USR2 (MEMDRAIN_STOP_SIGNAL; default TERM)", func(v string) error {
		sig, problem, ok := parseSignal(v)
		if !ok {
			return errors.New(problem)
		}
		o.stopSignal = sig
		return nil
	})
	durationFlag(fs, "queue-timeout", &o.queueTimeout, "how long a request waits for a ready worker before 503 (MEMDRAIN_QUEUE_TIMEOUT; default 30s)")
	intFlag(fs, "queue-limit", &o.queueLimit, "requests that may wait at once; more get 503 at once (MEMDRAIN_QUEUE_LIMIT; default 1024)")
	durationFlag(fs, "request-timeout", &o.requestTimeout, "a response header later than this gets 504, and its worker is replaced as hung (MEMDRAIN_REQUEST_TIMEOUT; default 0, off)")
	stringFlag(fs, "health-path", &o.healthPath, checkPath, "polled on each worker's PORT; failing --health-failures times in a row replaces it as hung (MEMDRAIN_HEALTH_PATH; default none)")
	durationFlag(fs, "health-interval", &o.healthInterval, "time between two polls of --health-path (MEMDRAIN_HEALTH_INTERVAL; default 5s)")
	intFlag(fs, "health-failures", &o.healthFailures, "failed polls in a row that make a worker hung, replaced at the next heartbeat (MEMDRAIN_HEALTH_FAILURES; default 3)")
	fs.Func("log-format", "memdrain's own log on stderr: text or json (MEMDRAIN_LOG_FORMAT; default text)", func(v string) error {
		f, ok := parseLogFormat(v)
		if !ok {
			return errors.New("accepted: text or json")
		}
		o.logFormat = f
		return nil
	})
	return fs
}

func intFlag(fs *flag.FlagSet, name string, dst *int, usage string) {
	fs.Func(name, usage, func(v string) error {
		n, problem, ok := envvar.Count(strings.TrimSpace(v))
		if !ok {
			return accepted(problem, "a whole number ≥ 0")
		}
		*dst = n
		return nil
	})
}

func sizeFlag(fs *flag.FlagSet, name string, dst *uint64, usage string) {
	fs.Func(name, usage, func(v string) error {
		n, err := memory.ParseMemoryLimit(v)
		if err != nil {
			return accepted(err.Error(), `a size such as "150Mi", "1.5Gi", "400MB" or a byte count such as 400000000, at least 1Mi, or 0 for none`)
		}
		*dst = n
		return nil
	})
}

func durationFlag(fs *flag.FlagSet, name string, dst *time.Duration, usage string) {
	fs.Func(name, usage, func(v string) error {
		d, problem, ok := envvar.Duration(strings.TrimSpace(v), "s")
		if !ok {
			return accepted(problem, `a duration such as "30s", "250ms" or "1m30s", ≥ 0`)
		}
		*dst = d
		return nil
	})
}

// stringFlag defines a flag whose value check accepts, or says what is
// wrong with and what is accepted.
func stringFlag(fs *flag.FlagSet, name string, dst *string, check func(string) (string, bool), usage string) {
	fs.Func(name, usage, func(v string) error {
		if problem, ok := check(v); !ok {
			return errors.New(problem)
		}
		*dst = v
		return nil
	})
}

// anyString accepts any value: listenaddr.Listen judges an address when
// it opens it.
func anyString(string) (string, bool) { return "", true }

// accepted joins what is wrong with a value, if anything more than not
// being accepted, and what is.
func accepted(problem, what string) error {
	if problem == "" || strings.Contains(problem, "accepted:") {
		if problem == "" {
			return errors.New("accepted: " + what)
		}
		return errors.New(problem)
	}
	return fmt.Errorf("%s; accepted: %s", problem, what)
}

// checkPath accepts an HTTP path: it starts with "/".
func checkPath(v string) (string, bool) {
	if !strings.HasPrefix(v, "/") {
		return fmt.Sprintf("accepted: a path starting with \"/\", such as \"/health\"; did you mean %q?", "/"+v), false
	}
	return "", true
}

// stopSignals are the signals --stop-signal accepts: those that ask a
// program to stop (KILL is what follows --kill-grace).
var stopSignals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
}

func parseSignal(v string) (syscall.Signal, string, bool) {
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(v)), "SIG")
	if sig, ok := stopSignals[name]; ok {
		return sig, "", true
	}
	if n, err := strconv.Atoi(name); err == nil {
		for _, sig := range stopSignals {
			if int(sig) == n {
				return sig, "", true
			}
		}
	}
	return 0, "accepted: TERM, INT, QUIT, HUP, USR1 or USR2 (with or without SIG, or its number)", false
}

func parseLogFormat(v string) (string, bool) {
	switch f := strings.ToLower(strings.TrimSpace(v)); f {
	case "text", "json":
		return f, true
	}
	return "", false
}

// commandVars are the variables of the command's own settings; the
// supervisor's are read by cluster.FromEnv.
var commandVars = []envvar.Var[options]{
	stringVar("MEMDRAIN_READY_PATH", "readyPath", func(o *options) *string { return &o.readyPath }, checkPath, pathAccepted, "/health"),
	stringVar("MEMDRAIN_HEALTH_PATH", "healthPath", func(o *options) *string { return &o.healthPath }, checkPath, pathAccepted, "/health"),
	envvar.DurationVar("MEMDRAIN_HEALTH_INTERVAL", "healthInterval", func(o *options) *time.Duration { return &o.healthInterval }, "s", "the default 5s"),
	envvar.CountVar("MEMDRAIN_HEALTH_FAILURES", "healthFailures", func(o *options) *int { return &o.healthFailures }, "the default 3"),
	{
		Name: "MEMDRAIN_STOP_SIGNAL", Field: "stopSignal", Accepted: "TERM, INT, QUIT, HUP, USR1 or USR2", Example: "INT",
		Set: func(o *options, v string) (string, bool) {
			sig, problem, ok := parseSignal(v)
			if ok {
				o.stopSignal = sig
			}
			return problem, ok
		},
	},
	envvar.DurationVar("MEMDRAIN_QUEUE_TIMEOUT", "queueTimeout", func(o *options) *time.Duration { return &o.queueTimeout }, "s", "no wait: 503 at once"),
	envvar.CountVar("MEMDRAIN_QUEUE_LIMIT", "queueLimit", func(o *options) *int { return &o.queueLimit }, "no queue"),
	envvar.DurationVar("MEMDRAIN_REQUEST_TIMEOUT", "requestTimeout", func(o *options) *time.Duration { return &o.requestTimeout }, "s", "off"),
	stringVar("MEMDRAIN_PID_FILE", "pidFile", func(o *options) *string { return &o.pidFile }, checkPidFile, "the path of a file", "/run/app/memdrain.pid"),
	stringVar("MEMDRAIN_METRICS", "metrics", func(o *options) *string { return &o.metrics }, anyString, `"host:port" or "unix:/path"`, "127.0.0.1:9100"),
	{
		Name: "MEMDRAIN_LOG_FORMAT", Field: "logFormat", Accepted: "text or json", Example: "json",
		Set: func(o *options, v string) (string, bool) {
			f, ok := parseLogFormat(v)
			if ok {
				o.logFormat = f
			}
			return "", ok
		},
	},
}

// stringVar is the variable of a stringFlag: what check accepts sets the
// field dst returns.
func stringVar(name, field string, dst func(*options) *string, check func(string) (string, bool), accepted, example string) envvar.Var[options] {
	return envvar.Var[options]{
		Name: name, Field: field, Accepted: accepted, Example: example,
		Set: func(o *options, v string) (string, bool) {
			problem, ok := check(v)
			if ok {
				*dst(o) = v
			}
			return problem, ok
		},
	}
}

// pathAccepted is what checkPath accepts, for errors.
const pathAccepted = `a path starting with "/"`

// usageText prints the flags, for memdrain run -h and errors.
func usageText() string {
	var b strings.Builder
	b.WriteString("usage: memdrain run [flags] -- COMMAND [ARGS...]\n\nflags:\n")
	fs := newFlagSet(&options{})
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}
