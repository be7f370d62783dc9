package drain

import "fmt"

// Reason says why a drain started. The zero value is not a valid reason.
type Reason uint8

// The reasons a drain can start. They are stable: package cluster sends them
// between processes by name.
const (
	// Manual: the program asked for it.
	Manual Reason = iota + 1
	// Memory: the process passed its memory limit.
	Memory
	// Requests: the process served its quota of requests.
	Requests
	// Age: the process lived its allotted time.
	Age
	// Signal: the process received SIGTERM or SIGINT.
	Signal
	// Reload: an operator asked for a rolling reload (SIGHUP to a supervisor).
	Reload
	// Supervisor: the supervising process asked for it, or went away.
	Supervisor
)

var reasonNames = [...]string{
	Manual:     "manual",
	Memory:     "memory",
	Requests:   "requests",
	Age:        "age",
	Signal:     "signal",
	Reload:     "reload",
	Supervisor: "supervisor",
}

// String returns the reason's stable lower-case name, such as "memory".
func (r Reason) String() string {
	if r.Valid() {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Valid reports whether r is one of the declared reasons.
func (r Reason) Valid() bool {
	return r >= Manual && int(r) < len(reasonNames)
}

// MarshalText encodes r as its name.
func (r Reason) MarshalText() ([]byte, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("drain: invalid reason %d", uint8(r))
	}
	return []byte(reasonNames[r]), nil
}

// UnmarshalText decodes a name produced by MarshalText.
func (r *Reason) UnmarshalText(text []byte) error {
	for i, name := range reasonNames {
		if name != "" && name == string(text) {
			*r = Reason(i)
			return nil
		}
	}
	return fmt.Errorf("drain: unknown reason %q; accepted: manual, memory, requests, age, signal, reload, supervisor", text)
}

// ExitRecycle is the exit code a program should use after a drain that its
// own limits started (memory, requests, age), to be started again: 75,
// EX_TEMPFAIL, "try again". It is non-zero so that systemd's Restart=on-failure restarts the process;
// Kubernetes restarts a Deployment's container whatever the code.
const ExitRecycle = 75

// ExitCode returns the exit code a standalone program should end with after
// this drain: 0 when it was asked to stop (a signal, the program itself, a
// supervisor, a reload), ExitRecycle when its own limits started it.
func (r Result) ExitCode() int {
	switch r.Reason {
	case Memory, Requests, Age:
		return ExitRecycle
	}
	return 0
}
