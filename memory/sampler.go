package memory

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"

	"github.com/shirou/gopsutil/v4/process"
)

// A Sampler measures a process's memory.
//
// Sample returns the memory, in bytes, that counts against a process's
// limit. It returns an error, and no number, if the process does not exist
// or cannot be measured. Sample may be called from several goroutines at
// once.
type Sampler interface {
	Sample(pid int) (uint64, error)
}

// SamplerFunc adapts an ordinary function to the Sampler interface.
type SamplerFunc func(pid int) (uint64, error)

// Sample returns f(pid).
func (f SamplerFunc) Sample(pid int) (uint64, error) { return f(pid) }

// RSS samples the resident set size of any process: the pages of its memory
// that are in RAM, including pages it shares with other processes, such as
// the executable's code. It works on Linux (from /proc/<pid>/statm), macOS
// and Windows.
var RSS Sampler = rssSampler{}

// Anon samples a process's resident anonymous memory: its resident memory
// less the file-backed and shared pages, which on Linux is exactly RssAnon
// (from /proc/<pid>/statm): heap, stacks, and
// everything else the process wrote itself. Workers that run the same binary
// share its code, which RSS counts once in every worker and Anon in none; Anon
// is therefore the figure that grows when one worker leaks and that a
// replacement gives back.
//
// It is not the unique set size (USS) that tools such as smem report, which
// also counts the file pages only this process maps, and costs a walk of
// /proc/<pid>/smaps. Elsewhere than on Linux, Anon is RSS.
var Anon Sampler = anonSampler{}

// GoRuntime samples the memory the Go runtime of this very process has
// mapped and not returned to the operating system, from runtime/metrics:
// /memory/classes/total:bytes less /memory/classes/heap/released:bytes. It
// counts only memory the Go runtime knows of (not cgo's allocations, for
// one), but costs no system call. It samples only this process: pid must be
// os.Getpid() or 0, which means this process; any other pid is an error.
var GoRuntime Sampler = goRuntimeSampler{}

// The built-in samplers are distinct comparable types, not SamplerFuncs, so
// that configuration code can compare a Sampler with RSS, Anon or GoRuntime.
type (
	rssSampler       struct{}
	anonSampler      struct{}
	goRuntimeSampler struct{}
)

func (rssSampler) Sample(pid int) (uint64, error)       { return sampleRSS(pid) }
func (anonSampler) Sample(pid int) (uint64, error)      { return sampleAnon(pid) }
func (goRuntimeSampler) Sample(pid int) (uint64, error) { return sampleGoRuntime(pid) }

// SamplerByName returns the sampler a configuration names: "rss" for RSS,
// "anon" for Anon, "go" for GoRuntime, in any case and with surrounding white
// space ignored. An empty name means the default, RSS, because a name usually
// comes from an environment variable that may be set but empty. Any other
// name is an error that lists the accepted ones.
func SamplerByName(name string) (Sampler, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "rss":
		return RSS, nil
	case "anon":
		return Anon, nil
	case "uss":
		return nil, fmt.Errorf("memory sampler %q: renamed \"anon\", for what it measures: resident anonymous memory (RssAnon), not the unique set size", name)
	case "go":
		return GoRuntime, nil
	}
	return nil, fmt.Errorf("memory sampler %q: unknown; accepted: rss (resident set size), anon (resident anonymous memory: heap and stacks, not the shared code), go (the Go runtime's own figure, this process only)", name)
}

// checkPid rejects what cannot be a process id, before it reaches a system
// call or an int32 conversion that would wrap it into someone else's pid.
func checkPid(pid int) error {
	if pid <= 0 || pid > math.MaxInt32 {
		return fmt.Errorf("pid %d: out of range", pid)
	}
	return nil
}

func sampleRSS(pid int) (uint64, error) {
	if err := checkPid(pid); err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	// Built directly rather than with process.NewProcess, which checks that
	// the process exists: an extra system call per sample, when the sample
	// fails by itself for a process that is gone.
	p := &process.Process{Pid: int32(pid)}
	m, err := p.MemoryInfo()
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	if m.RSS == 0 {
		if err := checkExists(p); err != nil {
			return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
		}
	}
	return m.RSS, nil
}

func sampleAnon(pid int) (uint64, error) {
	if runtime.GOOS != "linux" {
		return sampleRSS(pid)
	}
	if err := checkPid(pid); err != nil {
		return 0, fmt.Errorf("anon: %w", err)
	}
	// gopsutil's MemoryInfoEx has the same figures, but its result type
	// differs by platform, which would take a build-tagged file; statm is one
	// short read either way.
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, fmt.Errorf("anon of pid %d: %w", pid, err)
	}
	rss, shared, err := parseStatm(string(data))
	if err != nil {
		return 0, fmt.Errorf("anon of pid %d: /proc/%d/statm: %w", pid, pid, err)
	}
	// The kernel's counters are per-thread approximations; never let the
	// difference wrap around.
	if shared >= rss {
		return 0, nil
	}
	return (rss - shared) * uint64(os.Getpagesize()), nil
}

// parseStatm returns the second and third fields of /proc/<pid>/statm, in
// pages: resident, and shared, which since Linux 4.5 is RssFile+RssShmem, so
// that resident less shared is RssAnon (proc(5)).
func parseStatm(s string) (resident, shared uint64, err error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("want at least 3 fields, got %q", s)
	}
	if resident, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("resident pages: %w", err)
	}
	if shared, err = strconv.ParseUint(f[2], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("shared pages: %w", err)
	}
	return resident, shared, nil
}

// checkExists tells a process that has no resident memory from one that is
// gone: on macOS gopsutil reports zero, with no error, for a pid that does
// not exist.
func checkExists(p *process.Process) error {
	exists, err := process.PidExists(p.Pid)
	if err != nil {
		return err
	}
	if !exists {
		return process.ErrorProcessNotRunning
	}
	return nil
}

// selfPid is this process's pid; it never changes, since Go cannot fork.
var selfPid = os.Getpid()

// goRuntimeSamples is what GoRuntime reads, kept between calls so that a
// sample allocates nothing; goRuntimeMu guards it.
var (
	goRuntimeMu      sync.Mutex
	goRuntimeSamples = []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
)

func sampleGoRuntime(pid int) (uint64, error) {
	if pid != 0 && pid != selfPid {
		return 0, fmt.Errorf("go runtime memory of pid %d: the Go runtime measures only its own process (pid %d); use RSS or Anon", pid, selfPid)
	}
	goRuntimeMu.Lock()
	defer goRuntimeMu.Unlock()
	metrics.Read(goRuntimeSamples)
	total, released := goRuntimeSamples[0].Value, goRuntimeSamples[1].Value
	if total.Kind() != metrics.KindUint64 || released.Kind() != metrics.KindUint64 {
		// Both metrics exist since Go 1.16; this is for a runtime that
		// dropped one.
		return 0, errors.New("go runtime memory: runtime/metrics lacks /memory/classes/total:bytes or /memory/classes/heap/released:bytes")
	}
	if released.Uint64() >= total.Uint64() {
		return 0, nil
	}
	return total.Uint64() - released.Uint64(), nil
}
