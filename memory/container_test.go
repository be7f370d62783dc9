package memory

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestContainerLimitShare(t *testing.T) {
	l := ContainerLimit{Bytes: 512 << 20, Source: "cgroup v1 /sys/fs/cgroup/memory/app/memory.limit_in_bytes"}
	assert.Equal(t, uint64(483183820), l.Share(0.9, 1), "90% of 512MiB, rounded down")
	assert.Equal(t, uint64(161061273), l.Share(0.9, 3))
	assert.Equal(t, uint64(512<<20), l.Share(1, 1))
	for _, bad := range []float64{0, -1, 1.5, math.NaN()} {
		assert.Zero(t, l.Share(bad, 1), "ratio %v", bad)
	}
	assert.Zero(t, l.Share(0.9, 0))
}

func TestContainerLimitExplain(t *testing.T) {
	l := ContainerLimit{Bytes: 512 << 20, Source: "cgroup v1 /sys/fs/cgroup/memory/app/memory.limit_in_bytes"}
	assert.Equal(t, "460.8MiB: 90% of the cgroup limit 512MiB (cgroup v1 /sys/fs/cgroup/memory/app/memory.limit_in_bytes)",
		l.Explain(l.Share(0.9, 1), 0.9, 1, ""))
	assert.Equal(t, "153.6MiB: 90% of the cgroup limit 512MiB (cgroup v1 /sys/fs/cgroup/memory/app/memory.limit_in_bytes), divided by 3 (2 workers + 1 replacement)",
		l.Explain(l.Share(0.9, 3), 0.9, 3, "2 workers + 1 replacement"))
	assert.Contains(t, l.Explain(l.Share(0.85, 1), 0.85, 1, ""), ": 85% of")
}
