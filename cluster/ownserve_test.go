//go:build linux || darwin

package cluster

import (
	"net/http"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/stretchr/testify/assert"
)

// uncountedWarning is the start of what the master logs when MaxRequests is
// set and a worker serves without counting.
const uncountedWarning = "MaxRequests is set but worker"

func TestMaxRequestsRecyclesAWorkerThatServesWithItsOwnServer(t *testing.T) {
	h := startCluster(t, Config{Workers: 1, MaxRequests: 20, CheckInterval: 50 * time.Millisecond}, servesOwnServer)
	first := h.waitReady(1)[0]
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 25 {
		body(t, client, h.url+"/health")
	}
	exited := h.waitFor("the recycle", func(e Event) bool { return e.Kind == ExitedPlanned })
	assert.Equal(t, first, exited.Pid)
	assert.Equal(t, drain.Requests, exited.Reason)
	assert.Zero(t, h.count(ExitedAccidental))
	assert.NotContains(t, h.logs.String(), uncountedWarning, "a worker counting with Handler is not warned about")
}

func TestTheMasterWarnsWhenMaxRequestsIsSetAndAWorkerNeverCounts(t *testing.T) {
	h := startCluster(t, Config{Workers: 1, MaxRequests: 20, CheckInterval: 50 * time.Millisecond}, servesOwnUncounted)
	h.waitReady(1)
	h.waitLog(uncountedWarning)
	assert.Contains(t, h.logs.String(), "level=WARN msg=\"Config."+uncountedWarning)
	assert.Zero(t, h.count(ExitedPlanned), "nothing else came of it")
}
