package cluster

import (
	"fmt"
	"math/bits"

	"github.com/memdrain/memdrain/memory"
)

// checkMemoryFits reports an error if the workers may together need more
// memory than available, the bytes this process may use according to
// source (both as returned by memory.AvailableMemory). c may be given with
// or without its defaults.
//
// During a hand-over a replacement runs beside the worker it replaces, so
// with MaxMemory set the fleet may reach (Workers + MaxReplacements) ×
// MaxMemory. A TotalMemory budget, which counts every process, replacements
// included, caps that sum when it is lower: it is what lets a few workers
// grow large while the fleet stays small. Without MaxMemory, the budget
// alone must fit. Without either there is nothing to check.
func (c Config) checkMemoryFits(available uint64, source string) error {
	d := c.withDefaults()
	if d.MaxMemory == 0 && d.TotalMemory == 0 {
		return nil
	}
	// More replacements than workers never run at once.
	replacements := uint64(max(min(d.MaxReplacements, d.Workers), 0))
	procs := uint64(max(d.Workers, 0)) + replacements
	var perWorker uint64
	saturated := false
	if d.MaxMemory > 0 {
		hi, lo := bits.Mul64(procs, d.MaxMemory)
		perWorker, saturated = lo, hi != 0
	}

	if d.TotalMemory > 0 && (d.MaxMemory == 0 || saturated || d.TotalMemory < perWorker) {
		if d.TotalMemory <= available {
			return nil
		}
		need, avail := formatPair(d.TotalMemory, available)
		return fmt.Errorf("cluster: TotalMemory %s is more than the %s this process may use (%s); lower TotalMemory",
			need, avail, source)
	}
	if !saturated && perWorker <= available {
		return nil
	}
	need, avail := formatPair(perWorker, available)
	total := "= " + need
	if saturated {
		total, avail = "overflows 64 bits", memory.FormatSize(available)
	}
	plural := func(n uint64, word string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, word)
		}
		return fmt.Sprintf("%d %ss", n, word)
	}
	lower := "MaxMemory or Workers"
	if replacements > 1 {
		lower = "MaxMemory, Workers or MaxReplacements"
	}
	return fmt.Errorf("cluster: %s + %s × MaxMemory %s %s, more than the %s this process may use (%s); lower %s, or set a TotalMemory budget that fits",
		plural(uint64(max(d.Workers, 0)), "worker"), plural(replacements, "replacement"), memory.FormatSize(d.MaxMemory),
		total, avail, source, lower)
}

// formatPair formats two sizes for a message that says need is more than
// available, adding the exact bytes when rounding would print them alike
// ("16GiB, more than the 16GiB").
func formatPair(need, available uint64) (string, string) {
	n, a := memory.FormatSize(need), memory.FormatSize(available)
	if n == a {
		return fmt.Sprintf("%s (%d bytes)", n, need), fmt.Sprintf("%s (%d bytes)", a, available)
	}
	return n, a
}
