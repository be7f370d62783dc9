package main

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/memdrain/memdrain/cluster"
)

// jsonEvent is one line of -events-json output: a cluster.Event, a status
// snapshot (Kind "status"), or, in -baseline mode, a baseline worker's own
// decision (Source "worker"). The benchmark harness (bench/) parses these
// lines; keep the field names stable.
type jsonEvent struct {
	Time       time.Time              `json:"t"`
	Kind       string                 `json:"kind"`
	Source     string                 `json:"source"` // "master" or "worker"
	Worker     int                    `json:"worker"`
	Pid        int                    `json:"pid,omitempty"`
	Reason     string                 `json:"reason,omitempty"`
	Memory     uint64                 `json:"memory,omitempty"`
	DurationNS int64                  `json:"duration_ns,omitempty"`
	Err        string                 `json:"err,omitempty"`
	Workers    []cluster.WorkerStatus `json:"workers,omitempty"` // for Kind "status"
}

// jsonLines writes jsonEvents to stdout, one line per write, so that lines
// from the master and from its workers (which share its stdout) never
// interleave: a write of up to PIPE_BUF bytes to a pipe is atomic.
type jsonLines struct {
	mu sync.Mutex
}

func (j *jsonLines) write(e jsonEvent) {
	line, err := json.Marshal(e)
	if err != nil {
		return // every field marshals; nothing to report it to
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

// event writes a supervisor's decision. It runs in the supervisor's loop,
// so it only formats and writes.
func (j *jsonLines) event(e cluster.Event) {
	out := jsonEvent{
		Time: e.Time, Kind: e.Kind.String(), Source: "master", Worker: e.Worker, Pid: e.Pid,
		Memory: e.Memory, DurationNS: int64(e.Duration),
	}
	if e.Reason.Valid() {
		out.Reason = e.Reason.String()
	}
	if e.Err != nil {
		out.Err = e.Err.Error()
	}
	j.write(out)
}

// statusEvery writes a snapshot of every worker each interval until ctx
// ends.
func (j *jsonLines) statusEvery(ctx context.Context, c *cluster.Cluster, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		j.write(jsonEvent{Time: time.Now(), Kind: "status", Source: "master", Workers: c.Status()})
	}
}
