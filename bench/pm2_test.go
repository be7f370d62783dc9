package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Recycles are read from each side's own log: memdrain's planned exits for
// memory (not for a signal), PM2's restarts over max_memory_restart.
func TestCountRecycles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		side, log string
		want      int
	}{
		{sideMemdrain, `{"msg":"exited planned","reason":"memory","worker":0}
{"msg":"exited planned","reason":"signal","worker":1}
[worker 0 pid 12] {"msg":"exited planned","reason":"memory"}
{"msg":"draining","reason":"memory"}
{"msg":"exited planned","reason":"memory","worker":1}
`, 2},
		{sidePM2, `2026-11-26T01:04:27: PM2 log: [PM2][WORKER] Process 0 restarted because it exceeds --max-memory-restart value (current_memory=165138432 max_memory_limit=157286400 [octets])
2026-11-26T01:04:28: PM2 log: App [app:0] starting in -cluster mode-
2026-11-26T01:04:31: PM2 log: [PM2][WORKER] Process 1 restarted because it exceeds --max-memory-restart value (current_memory=168091648 max_memory_limit=157286400 [octets])
`, 2},
	} {
		path := filepath.Join(dir, tc.side+".log")
		if err := os.WriteFile(path, []byte(tc.log), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := countRecycles(tc.side, path); err != nil || got != tc.want {
			t.Errorf("%s: %d recycles, %v; want %d", tc.side, got, err, tc.want)
		}
	}
}
