package memory

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// DefaultContainerRatio is the fraction of a container's memory limit that
// standalone.ListenAndServe and memdrain run drain at when no limit is
// given: the 10 % left is what the process may still grow by between the
// sample that finds it over and the end of its drain, and what the kernel
// counts beside it (page cache, kernel memory) before its OOM killer acts.
const DefaultContainerRatio = 0.9

// A ContainerLimit is the memory limit of the cgroup this process runs in
// (or of one above it, whichever is smaller), as AvailableMemory reads it.
type ContainerLimit struct {
	Bytes  uint64
	Source string // the file that set it, as in "cgroup v2 /sys/fs/cgroup/memory.max"
}

// FindContainerLimit returns the cgroup memory limit that applies to this
// process. ok is false when there is none, or when the limit is above the
// machine's total memory (then the machine, not the container, bounds the
// process, and the kernel's OOM killer is not the container's). err is
// AvailableMemory's: a limit file that exists but cannot be read or parsed.
func FindContainerLimit() (limit ContainerLimit, ok bool, err error) {
	bytes, source, err := AvailableMemory()
	if err != nil {
		return ContainerLimit{}, false, err
	}
	if !strings.HasPrefix(source, "cgroup ") {
		return ContainerLimit{}, false, nil
	}
	return ContainerLimit{Bytes: bytes, Source: source}, true, nil
}

// Share returns ratio × the limit / n, rounded down to a whole byte: the
// limit of each of n processes that may run at once in the container. It
// returns 0 when ratio is not in (0, 1] or n < 1.
func (l ContainerLimit) Share(ratio float64, n int) uint64 {
	if math.IsNaN(ratio) || ratio <= 0 || ratio > 1 || n < 1 {
		return 0
	}
	return uint64(float64(l.Bytes) * ratio / float64(n))
}

// Explain says how share came from the limit, for the log: "460.8MiB: 90%
// of the cgroup limit 512MiB (cgroup v1 /sys/fs/cgroup/memory/app/
// memory.limit_in_bytes)", with ", divided by 3 (2 workers + 1
// replacement)" when n > 1, in which case per names the n.
func (l ContainerLimit) Explain(share uint64, ratio float64, n int, per string) string {
	pct := strconv.FormatFloat(math.Round(ratio*1000)/10, 'f', -1, 64)
	s := fmt.Sprintf("%s: %s%% of the cgroup limit %s (%s)", FormatSize(share), pct, FormatSize(l.Bytes), l.Source)
	if n > 1 {
		s += fmt.Sprintf(", divided by %d (%s)", n, per)
	}
	return s
}
