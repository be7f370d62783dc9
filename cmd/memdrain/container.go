//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/memory"
)

// containerMaxMemory returns --max-memory's default when no memory setting
// was given (--max-memory, --hard-memory, --total-memory or their
// variables, 0 included): each worker's share of 90 % of the cgroup's
// memory limit, so that a worker is replaced before the kernel's OOM killer
// ends the container. It logs what it chose and why.
func containerMaxMemory(o options, log *slog.Logger) uint64 {
	if o.memoryGiven {
		return o.cluster.MaxMemory
	}
	l, ok, err := memory.FindContainerLimit()
	switch {
	case err != nil:
		log.Warn("no --max-memory: the cgroup's memory limit cannot be read", "err", err.Error())
		return 0
	case !ok:
		log.Info("no --max-memory: none was given, and no cgroup memory limit applies to memdrain")
		return 0
	}
	limit, why := workerShare(l, o.cluster)
	if limit < 1<<20 {
		log.Warn("no --max-memory: the cgroup's memory limit is too small to split across the workers", "limit", why)
		return 0
	}
	log.Info("--max-memory " + why)
	return limit
}

// workerShare splits memory.DefaultContainerRatio of the cgroup's limit l
// across the processes that may run at once: the workers, and the
// replacements that run beside them during a hand-over (as the cluster
// counts them when it checks that the limits fit).
func workerShare(l memory.ContainerLimit, c cluster.Config) (uint64, string) {
	workers := c.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0) // cluster's default
	}
	replacements := c.MaxReplacements
	if replacements == 0 {
		replacements = 1 // cluster's default
	}
	replacements = min(replacements, workers)
	n := workers + replacements
	per := fmt.Sprintf("%s + %s", plural(workers, "worker"), plural(replacements, "replacement"))
	limit := l.Share(memory.DefaultContainerRatio, n)
	return limit, l.Explain(limit, memory.DefaultContainerRatio, n, per) + " per worker"
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
