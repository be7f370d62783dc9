package main

import (
	"strings"
	"testing"
	"time"

	"github.com/memdrain/memdrain/cluster"
)

func TestParseEvent(t *testing.T) {
	e, err := parseEvent(`{"t":"2026-11-24T14:51:02.78420771Z","kind":"over-limit","source":"master","worker":1,"pid":7087,"reason":"memory","memory":42000384}`)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 24, 14, 51, 2, 784207710, time.UTC)
	if !e.Time.Equal(want) || e.Kind != kindOverLimit || e.Worker != 1 || e.Pid != 7087 || e.Reason != "memory" || e.Memory != 42000384 {
		t.Errorf("parsed %+v", e)
	}
}

func TestParseStatus(t *testing.T) {
	e, err := parseEvent(`{"t":"2026-11-24T14:51:01Z","kind":"status","source":"master","worker":0,"workers":[{"worker":0,"pid":10,"state":"serving","memory":1048576,"in_flight":3,"served":99,"restarts":0},{"worker":1,"pid":11,"state":"draining","memory":2,"in_flight":0,"served":5,"restarts":2}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Workers) != 2 || e.Workers[1].Pid != 11 || e.Workers[1].State != cluster.StateDraining || e.Workers[1].Restarts != 2 || e.Workers[0].InFlight != 3 {
		t.Errorf("parsed %+v", e.Workers)
	}
}

func TestParseEventRejects(t *testing.T) {
	for _, line := range []string{
		"", "example: something went wrong", `{"kind":"ready"}`, `{"t":"2026-11-24T14:51:01Z"}`, `{"t":"yesterday","kind":"ready"}`, `{"t":`,
	} {
		if _, err := parseEvent(line); err == nil {
			t.Errorf("parseEvent(%q) accepted it", line)
		}
	}
}

func TestReadEventsSkipsStrayLines(t *testing.T) {
	in := strings.Join([]string{
		`{"t":"2026-11-24T14:51:00Z","kind":"started","source":"master","worker":0,"pid":1}`,
		`some worker's stray output`,
		`{"t":"2026-11-24T14:51:01Z","kind":"draining","source":"worker","worker":0,"pid":1,"reason":"memory"}`,
		`{"t":"2026-11-24T14:51:02Z","kind":"exited-accidental","source":"master","worker":0,"pid":1}`,
	}, "\n")
	var got []event
	skipped := readEvents(strings.NewReader(in), func(e event) { got = append(got, e) })
	if skipped != 1 || len(got) != 3 {
		t.Fatalf("skipped %d, got %d events", skipped, len(got))
	}
	if got[0].isRecycle() || !got[1].isRecycle() || !got[2].isExit() || got[1].isExit() {
		t.Errorf("classification wrong: %+v", got)
	}
}
