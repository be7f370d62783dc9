package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/memdrain/memdrain/cluster"
)

// event is one JSON line of the example's -events-json output: a
// supervisor event (Source "master"), a baseline worker's own decision
// (Source "worker"), or a status snapshot (Kind "status"). The field names
// are those of example/events.go.
type event struct {
	Time       time.Time              `json:"t"`
	Kind       string                 `json:"kind"`
	Source     string                 `json:"source"`
	Worker     int                    `json:"worker"`
	Pid        int                    `json:"pid"`
	Reason     string                 `json:"reason"`
	Memory     uint64                 `json:"memory"`
	DurationNS int64                  `json:"duration_ns"`
	Err        string                 `json:"err"`
	Workers    []cluster.WorkerStatus `json:"workers"`
}

// The event kinds the harness acts on (cluster.EventKind's names, and the
// baseline worker's own).
const (
	kindStarted    = "started"
	kindReady      = "ready"
	kindOverLimit  = "over-limit"
	kindDraining   = "draining"
	kindPlanned    = "exited-planned"
	kindAccidental = "exited-accidental"
	kindStatus     = "status"
)

// parseEvent decodes one line. Lines that are not JSON objects (a worker's
// stray output) are reported as such, so the caller can skip them.
func parseEvent(line string) (event, error) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "{") {
		return event{}, fmt.Errorf("not an event: %q", line)
	}
	var e event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return event{}, fmt.Errorf("event %q: %w", line, err)
	}
	if e.Kind == "" || e.Time.IsZero() {
		return event{}, fmt.Errorf("event %q: no kind or time", line)
	}
	return e, nil
}

// readEvents parses every line of r and sends the events to handle, until
// r ends. It returns the number of lines that were not events.
func readEvents(r io.Reader, handle func(event)) (skipped int) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		e, err := parseEvent(sc.Text())
		if err != nil {
			skipped++
			continue
		}
		handle(e)
	}
	return skipped
}

// isRecycle reports whether e is the start of a memory recycle: the
// master draining a worker it replaced (memdrain), or a baseline worker
// shutting itself down.
func (e event) isRecycle() bool { return e.Kind == kindDraining && e.Reason == "memory" }

// isExit reports whether e is a worker's exit, planned or not.
func (e event) isExit() bool { return e.Kind == kindPlanned || e.Kind == kindAccidental }
