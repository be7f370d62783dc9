// Package eventlog is the benchmark subject's output, one JSON object a
// line: every supervisor event, a status snapshot of every worker now and
// then, and in the baseline the decisions a worker takes itself. The
// subject (bench/subject) writes it with a Writer; the harness reads it
// with Read.
package eventlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/memdrain/memdrain/cluster"
)

// Event is one line: a cluster.Event (Source "master", Kind its
// EventKind's name), a status snapshot (Kind Status), or a baseline
// worker's own decision (Source "worker").
type Event struct {
	Time       time.Time              `json:"t"`
	Kind       string                 `json:"kind"`
	Source     string                 `json:"source"` // "master" or "worker"
	Worker     int                    `json:"worker"`
	Pid        int                    `json:"pid,omitempty"`
	Reason     string                 `json:"reason,omitempty"`
	Memory     uint64                 `json:"memory,omitempty"`
	DurationNS int64                  `json:"duration_ns,omitempty"`
	Err        string                 `json:"err,omitempty"`
	Workers    []cluster.WorkerStatus `json:"workers,omitempty"` // for Kind Status
}

// The kinds that are not a cluster.EventKind's name.
const (
	// Status is a snapshot of every worker, in Event.Workers.
	Status = "status"
	// ShutDown is a baseline worker's http.Server.Shutdown having
	// returned, after Event.DurationNS.
	ShutDown = "shut-down"
)

// FromCluster returns the line of a supervisor's event.
func FromCluster(e cluster.Event) Event {
	out := Event{
		Time: e.Time, Kind: e.Kind.String(), Source: "master", Worker: e.Worker, Pid: e.Pid,
		Memory: e.Memory, DurationNS: int64(e.Duration),
	}
	if e.Reason.Valid() {
		out.Reason = e.Reason.String()
	}
	if e.Err != nil {
		out.Err = e.Err.Error()
	}
	return out
}

// Is reports whether e is a supervisor event of kind k.
func (e Event) Is(k cluster.EventKind) bool { return e.Kind == k.String() }

// IsRecycle reports whether e is the start of a memory recycle: the
// master draining a worker it replaced (memdrain), or a baseline worker
// shutting itself down.
func (e Event) IsRecycle() bool { return e.Is(cluster.Draining) && e.Reason == "memory" }

// IsExit reports whether e is a worker's exit, planned or not.
func (e Event) IsExit() bool { return e.Is(cluster.ExitedPlanned) || e.Is(cluster.ExitedAccidental) }

// Writer writes Events to one io.Writer, a line a Write, so that the
// lines of a master and of its workers, which share its stdout, do not
// interleave: a write of up to PIPE_BUF bytes to a pipe is atomic.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes e as one line. It only formats and writes, so it may run
// in the supervisor's loop (cluster.Config.OnEvent).
func (w *Writer) Write(e Event) {
	line, err := json.Marshal(e)
	if err != nil {
		return // every field marshals; nothing to report it to
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w.Write(append(line, '\n'))
}

// Parse decodes one line. A line that is not a JSON object with a kind
// and a time (a worker's stray output) is an error, so the caller can
// skip it.
func Parse(line string) (Event, error) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "{") {
		return Event{}, fmt.Errorf("not an event: %q", line)
	}
	var e Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return Event{}, fmt.Errorf("event %q: %w", line, err)
	}
	if e.Kind == "" || e.Time.IsZero() {
		return Event{}, fmt.Errorf("event %q: no kind or time", line)
	}
	return e, nil
}

// Read parses every line of r and passes the events to handle, until r
// ends. It returns the number of lines that were not events.
func Read(r io.Reader, handle func(Event)) (skipped int) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		e, err := Parse(sc.Text())
		if err != nil {
			skipped++
			continue
		}
		handle(e)
	}
	return skipped
}
