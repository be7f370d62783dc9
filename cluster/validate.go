package cluster

import (
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/memdrain/memdrain/internal/listenaddr"
	"github.com/memdrain/memdrain/memory"
)

// Validate reports every field of c that cannot be used. It checks c as
// given, where a zero field stands for its default: the zero Config is
// valid, and Validate is meant for the Config as the program built it,
// before any defaults are applied (the defaults themselves are valid too).
// The problems are joined with errors.Join, so that all of them can be
// fixed at once; each one names the field, its value and what is accepted:
//
//	cluster: Config.Workers is -2; accepted: a count from 1 to 1024, or 0 for the CPUs this process may use (2)
//
// Besides signs and ranges, Validate rejects values that can only be
// mistakes: a non-zero memory size under 1 MiB or duration under 1µs (a
// number that lost its unit), a jitter without the limit it varies, sums
// that overflow, a BackoffMin above BackoffMax, a TotalMemory budget below
// MaxMemory, a HardMemory below MaxMemory or without it, a listen address that is empty, has no port or no unix socket
// path, the same address twice, Listen together with Listeners (one would
// be ignored), a listener that cannot be shared with a worker process, and
// memory.GoRuntime as Sampler (it measures only the process that calls it,
// and the master measures its workers).
//
// It also rejects a HeartbeatTimeout under 100 ms, which would kill
// healthy workers on a busy machine.
//
// Validate does not check that the memory limits fit in the memory the
// process may use; New does that in the master.
func (c Config) Validate() error {
	var p problems
	c.validateListen(&p)
	c.validateMemory(&p)
	c.validateRecycling(&p)
	c.validateTiming(&p)
	return errors.Join(p...)
}

// problems collects what Validate finds.
type problems []error

// add records that field's value is not accepted, and says what is.
func (p *problems) add(field string, value any, accepted string, args ...any) {
	*p = append(*p, fmt.Errorf("cluster: Config.%s is %v; accepted: %s", field, value, fmt.Sprintf(accepted, args...)))
}

// count checks a count, where zero means what zero says.
func (p *problems) count(field string, v int, zero string) {
	if v < 0 {
		p.add(field, v, "a positive count, or 0 for %s", zero)
	}
}

// duration checks a duration, where zero means what zero says. A positive
// one under a microsecond is a number that lost its unit.
func (p *problems) duration(field string, v time.Duration, zero string) {
	switch {
	case v < 0:
		p.add(field, v, "a positive duration, or 0 for %s", zero)
	case v > 0 && v < minDuration:
		p.add(field, v, "0 for %s, or at least %v; did you mean %d * time.Second or %d * time.Millisecond?", zero, minDuration, int64(v), int64(v))
	}
}

// validateListen checks where the cluster listens, and how many workers.
func (c Config) validateListen(p *problems) {
	seen := make(map[string]int, len(c.Listen))
	for i, addr := range c.Listen {
		field := fmt.Sprintf("Listen[%d]", i)
		if problem := checkAddr(addr); problem != "" {
			p.add(field, strconv.Quote(addr), "%s (%s)", acceptedAddr, problem)
			continue
		}
		if j, dup := seen[addr]; dup {
			p.add(field, strconv.Quote(addr), "addresses that differ from one another (Listen[%d] is the same)", j)
			continue
		}
		seen[addr] = i
	}

	for i, ln := range c.Listeners {
		if _, ok := ln.(syscall.Conn); !ok {
			p.add(fmt.Sprintf("Listeners[%d]", i), fmt.Sprintf("a %T", ln),
				"*net.TCPListener or *net.UnixListener, which can be shared with worker processes "+
					"(for HTTPS, pass the plain listener and set TLSConfig on the http.Server given to Worker.Serve)")
		}
	}
	if n := max(len(c.Listen), len(c.Listeners)); n > maxListeners {
		p.add("Listen", fmt.Sprintf("%d addresses", n), "at most %d listening sockets (in Listen or Listeners)", maxListeners)
	}
	if len(c.Listen) > 0 && len(c.Listeners) > 0 {
		// One of the two would be silently ignored.
		p.add("Listen", fmt.Sprintf("%q", c.Listen), "no addresses when Listeners are given (they replace Listen)")
	}
	if problem := checkControl(c.Control); c.Control != "" && problem != "" {
		p.add("Control", strconv.Quote(c.Control), "the path of a unix socket (%s)", problem)
	}
	if c.Launcher != nil && (len(c.Listen) > 0 || len(c.Listeners) > 0) {
		p.add("Listen", fmt.Sprintf("%q (with %d Listeners)", c.Listen, len(c.Listeners)),
			"no addresses and no Listeners when a Launcher starts the workers: its workers share no sockets")
	}

	if c.Workers < 0 || c.Workers > maxWorkers {
		p.add("Workers", c.Workers, "%s", acceptedWorkers())
	}
}

// validateMemory checks the memory limits and how memory is measured.
func (c Config) validateMemory(p *problems) {
	checkMemory := func(field string, v uint64, zero string) {
		if v == 0 || v >= minMemory {
			return
		}
		// v is bytes; what was meant was almost certainly v MiB.
		p.add(field, fmt.Sprintf("%d (bytes)", v), "0 for %s, or at least 1MiB (%d); did you mean %d << 20 (%s)?",
			zero, minMemory, v, memory.FormatSize(v<<20))
	}
	checkMemory("MaxMemory", c.MaxMemory, "no limit")
	checkMemory("TotalMemory", c.TotalMemory, "no budget")
	switch {
	case c.HardMemory != 0 && c.MaxMemory == 0:
		p.add("HardMemory", memory.FormatSize(c.HardMemory),
			"0 while MaxMemory is 0 (no limit): HardMemory is a ceiling above MaxMemory, for a worker whose replacement is not ready yet")
	case c.HardMemory != 0 && c.HardMemory < c.MaxMemory:
		p.add("HardMemory", memory.FormatSize(c.HardMemory), "0 for the default (MaxMemory × 1.25, %s here), or at least MaxMemory (%s)",
			memory.FormatSize(hardMemoryDefault(c.MaxMemory)), memory.FormatSize(c.MaxMemory))
	}
	if c.TotalMemory >= minMemory && c.MaxMemory >= minMemory && c.TotalMemory < c.MaxMemory {
		p.add("TotalMemory", memory.FormatSize(c.TotalMemory),
			"0 for no budget, or at least MaxMemory (%s): a budget below it is passed by a single worker before MaxMemory ever is",
			memory.FormatSize(c.MaxMemory))
	}
	if c.Sampler == memory.GoRuntime {
		p.add("Sampler", "memory.GoRuntime",
			"memory.RSS, memory.Anon, or a Sampler that measures another process: memory.GoRuntime measures only the process that calls it, and the master measures its workers")
	}

	p.duration("CheckInterval", c.CheckInterval, byDefault(defaultCheckInterval))
	if c.CheckInterval >= minDuration && c.CheckInterval < memory.MinCheckInterval {
		// Sampling every worker this often would cost more than it tells:
		// the Meter already samples a worker near its limit every 10 ms.
		p.add("CheckInterval", c.CheckInterval, "0 for %s, or at least %v", byDefault(defaultCheckInterval), memory.MinCheckInterval)
	}
	p.count("Consecutive", c.Consecutive, byDefault(defaultConsecutive))
	if r := c.SoftLimitRatio; math.IsNaN(r) || r > 1 {
		p.add("SoftLimitRatio", r, "a fraction in (0, 1], 0 for the default %v, or a negative number for no soft limit", defaultSoftLimitRatio)
	}
}

// validateRecycling checks the limits on a worker's requests and age.
func (c Config) validateRecycling(p *problems) {
	p.count("MaxRequests", c.MaxRequests, "off")
	p.count("MaxRequestsJitter", c.MaxRequestsJitter, "none")
	switch {
	case c.MaxRequestsJitter > 0 && c.MaxRequests == 0:
		p.add("MaxRequestsJitter", c.MaxRequestsJitter, "0 while MaxRequests is 0 (off): the jitter varies MaxRequests")
	case c.MaxRequests > 0 && c.MaxRequestsJitter > math.MaxInt-c.MaxRequests:
		p.add("MaxRequestsJitter", c.MaxRequestsJitter, "at most %d, so that MaxRequests plus the jitter fits in an int", math.MaxInt-c.MaxRequests)
	}
	p.duration("MaxAge", c.MaxAge, "off")
	p.duration("MaxAgeJitter", c.MaxAgeJitter, "none")
	switch {
	case c.MaxAgeJitter > 0 && c.MaxAge == 0:
		p.add("MaxAgeJitter", c.MaxAgeJitter, "0 while MaxAge is 0 (off): the jitter varies MaxAge")
	case c.MaxAge > 0 && c.MaxAgeJitter > math.MaxInt64-c.MaxAge:
		p.add("MaxAgeJitter", c.MaxAgeJitter, "at most %v, so that MaxAge plus the jitter fits in a time.Duration", time.Duration(math.MaxInt64-c.MaxAge))
	}
}

// validateTiming checks the timeouts, the heartbeat and the crash policy.
func (c Config) validateTiming(p *problems) {
	d := c.withDefaults() // for the checks that relate two fields
	p.duration("ReadyTimeout", c.ReadyTimeout, byDefault(defaultReadyTimeout))
	p.duration("DrainTimeout", c.DrainTimeout, byDefault(defaultDrainTimeout))
	p.duration("KillGrace", c.KillGrace, byDefault(defaultKillGrace))
	if d.DrainTimeout > 0 && d.KillGrace > 0 && d.KillGrace > math.MaxInt64-d.DrainTimeout {
		// The master waits DrainTimeout+KillGrace; an overflow would be a
		// negative wait, and a SIGKILL the moment a drain starts. Blame
		// the field that was set.
		if c.KillGrace != 0 {
			p.add("KillGrace", c.KillGrace, "at most %v, so that DrainTimeout (%v%s) plus KillGrace fits in a time.Duration",
				time.Duration(math.MaxInt64-d.DrainTimeout), d.DrainTimeout, defaultNote(c.DrainTimeout == 0))
		} else {
			p.add("DrainTimeout", c.DrainTimeout, "at most %v, so that DrainTimeout plus KillGrace (%v, the default) fits in a time.Duration",
				time.Duration(math.MaxInt64-d.KillGrace), d.KillGrace)
		}
	}
	p.duration("HeartbeatTimeout", c.HeartbeatTimeout, heartbeatDefault)
	if c.HeartbeatTimeout >= minDuration && c.HeartbeatTimeout < minHeartbeatTimeout {
		p.add("HeartbeatTimeout", c.HeartbeatTimeout, "0 for %s, or at least %v: a shorter timeout kills healthy workers on a busy machine",
			heartbeatDefault, minHeartbeatTimeout)
	}
	p.count("MaxReplacements", c.MaxReplacements, byDefault(defaultMaxReplacements))

	p.duration("BackoffMin", c.BackoffMin, byDefault(defaultBackoffMin))
	p.duration("BackoffMax", c.BackoffMax, byDefault(defaultBackoffMax))
	if d.BackoffMin > 0 && d.BackoffMax > 0 && d.BackoffMin > d.BackoffMax {
		// Blame the field that was set: with only BackoffMax set below the
		// default BackoffMin, BackoffMax is the one to change.
		if c.BackoffMin != 0 {
			p.add("BackoffMin", c.BackoffMin, "at most BackoffMax (%v%s)", d.BackoffMax, defaultNote(c.BackoffMax == 0))
		} else {
			p.add("BackoffMax", c.BackoffMax, "at least BackoffMin (%v, the default)", d.BackoffMin)
		}
	}
	p.duration("StableAfter", c.StableAfter, byDefault(defaultStableAfter))
	p.count("CrashLimit", c.CrashLimit, byDefault(defaultCrashLimit))
	p.duration("CrashWindow", c.CrashWindow, byDefault(defaultCrashWindow))
}

// byDefault says, in errors, what zero means for a field with a default.
func byDefault(def any) string { return fmt.Sprintf("the default %v", def) }

// heartbeatDefault says, in errors, what a zero HeartbeatTimeout means.
var heartbeatDefault = fmt.Sprintf("the default %d × CheckInterval, at least %v", heartbeatChecks, minDefaultHeartbeat)

// defaultNote marks a value in an error as the default the user did not set.
func defaultNote(isDefault bool) string {
	if isDefault {
		return ", the default"
	}
	return ""
}

// acceptedAddr describes a listen address, for errors.
const acceptedAddr = `"host:port" for TCP (":8080" for every interface) or "unix:/path" for a unix socket`

// acceptedWorkers describes Workers' range, with the number of CPUs this
// process may use, which the operator may not know.
func acceptedWorkers() string {
	return fmt.Sprintf("a count from 1 to %d, or 0 for the CPUs this process may use (%d)", maxWorkers, runtime.GOMAXPROCS(0))
}

// maxSocketPath is the longest unix socket path that fits in a
// sockaddr_un on both Linux (108 bytes) and macOS (104), with its NUL.
const maxSocketPath = 103

// checkControl returns what is wrong with a control socket path, or "".
func checkControl(path string) string {
	switch {
	case strings.TrimSpace(path) == "":
		return "empty"
	case len(path) > maxSocketPath:
		return fmt.Sprintf("%d bytes long, over the %d a unix socket path may have", len(path), maxSocketPath)
	}
	return ""
}

// checkAddr returns what is wrong with a listen address, or "" if nothing
// is.
func checkAddr(addr string) string {
	if strings.TrimSpace(addr) == "" {
		return "empty"
	}
	if strings.TrimSpace(addr) != addr {
		return "white space around the address"
	}
	if path, ok := strings.CutPrefix(addr, listenaddr.UnixPrefix); ok {
		if path == "" {
			return "no socket path after \"unix:\""
		}
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		if _, numErr := strconv.ParseUint(addr, 10, 16); numErr == nil {
			return fmt.Sprintf("a port alone; did you mean %q?", ":"+addr)
		}
		if strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "./") {
			return fmt.Sprintf("a path; did you mean %q?", listenaddr.UnixPrefix+addr)
		}
		return "no port"
	}
	return ""
}
