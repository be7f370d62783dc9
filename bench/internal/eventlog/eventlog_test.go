package eventlog

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/drain"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseEvent(t *testing.T) {
	e, err := Parse(`{"t":"2026-11-24T14:51:02.78420771Z","kind":"over-limit","source":"master","worker":1,"pid":7087,"reason":"memory","memory":42000384}`)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 24, 14, 51, 2, 784207710, time.UTC)
	if !e.Time.Equal(want) || !e.Is(cluster.OverLimit) || e.Worker != 1 || e.Pid != 7087 || e.Reason != "memory" || e.Memory != 42000384 {
		t.Errorf("parsed %+v", e)
	}
}

func TestParseStatus(t *testing.T) {
	e, err := Parse(`{"t":"2026-11-24T14:51:01Z","kind":"status","source":"master","worker":0,"workers":[{"worker":0,"pid":10,"state":"serving","memory":1048576,"in_flight":3,"served":99,"restarts":0},{"worker":1,"pid":11,"state":"draining","memory":2,"in_flight":0,"served":5,"restarts":2}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Workers) != 2 || e.Workers[1].Pid != 11 || e.Workers[1].State != cluster.StateDraining || e.Workers[1].Restarts != 2 || e.Workers[0].InFlight != 3 {
		t.Errorf("parsed %+v", e.Workers)
	}
}

func TestParseEventRejects(t *testing.T) {
	for _, line := range []string{
		"", "subject: something went wrong", `{"kind":"ready"}`, `{"t":"2026-11-24T14:51:01Z"}`, `{"t":"yesterday","kind":"ready"}`, `{"t":`,
	} {
		if _, err := Parse(line); err == nil {
			t.Errorf("Parse(%q) accepted it", line)
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
	var got []Event
	skipped := Read(strings.NewReader(in), func(e Event) { got = append(got, e) })
	if skipped != 1 || len(got) != 3 {
		t.Fatalf("skipped %d, got %d events", skipped, len(got))
	}
	if got[0].IsRecycle() || !got[1].IsRecycle() || !got[2].IsExit() || got[1].IsExit() {
		t.Errorf("classification wrong: %+v", got)
	}
}

// TestWrittenLinesReadBack: what the subject writes is what the harness
// reads, a line an event.
func TestWrittenLinesReadBack(t *testing.T) {
	at := time.Date(2026, 11, 24, 14, 51, 2, 0, time.UTC)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Write(FromCluster(cluster.Event{Time: at, Kind: cluster.Draining, Worker: 1, Pid: 7, Reason: drain.Memory, Memory: 42}))
	w.Write(FromCluster(cluster.Event{Time: at, Kind: cluster.ExitedAccidental, Worker: 0, Pid: 8, Err: errors.New("exit status 2")}))
	w.Write(Event{Time: at, Kind: Status, Source: "master", Workers: []cluster.WorkerStatus{{Worker: 0, Pid: 9, State: cluster.StateServing}}})
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Fatalf("%d lines for 3 events:\n%s", n, buf.String())
	}
	var got []Event
	if skipped := Read(&buf, func(e Event) { got = append(got, e) }); skipped != 0 || len(got) != 3 {
		t.Fatalf("skipped %d, got %d events", skipped, len(got))
	}
	if !got[0].IsRecycle() || got[0].Source != "master" || got[0].Worker != 1 || got[0].Pid != 7 || got[0].Memory != 42 || !got[0].Time.Equal(at) {
		t.Errorf("recycle read back as %+v", got[0])
	}
	if !got[1].IsExit() || got[1].Err != "exit status 2" || got[1].Reason != "" {
		t.Errorf("accident read back as %+v", got[1])
	}
	if got[2].Kind != Status || len(got[2].Workers) != 1 || got[2].Workers[0].State != cluster.StateServing {
		t.Errorf("status read back as %+v", got[2])
	}
}
