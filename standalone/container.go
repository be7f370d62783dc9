package standalone

import (
	"log/slog"

	"github.com/memdrain/memdrain/memory"
)

// containerLimit returns the memory limit ListenAndServe watches when the
// program gave none: ratio (0 for the default) of the cgroup's limit, or 0
// for none. It logs what it chose and why, since an operator who set no
// limit should still see which one applies.
func containerLimit(ratio float64, log *slog.Logger) uint64 {
	if ratio < 0 {
		return 0
	}
	if ratio == 0 {
		ratio = memory.DefaultContainerRatio
	}
	l, ok, err := memory.FindContainerLimit()
	switch {
	case err != nil:
		log.Warn("no memory limit: the cgroup's memory limit cannot be read", "err", err)
		return 0
	case !ok:
		log.Info("no memory limit: none was given, and no cgroup memory limit applies to this process")
		return 0
	}
	limit := l.Share(ratio, 1)
	if limit == 0 {
		log.Warn("no memory limit: the cgroup's memory limit is too small to take a share of", "cgroup_limit", memory.FormatSize(l.Bytes))
		return 0
	}
	log.Info("memory limit " + l.Explain(limit, ratio, 1, ""))
	return limit
}
