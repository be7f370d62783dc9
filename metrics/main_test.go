//go:build linux || darwin

package metrics

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/internal/leaky"
	"go.uber.org/goleak"
)

// The test binary is its own worker, as in package cluster: the master
// re-executes it, and TestMain sends the re-executed process to a worker
// serving the leaky app instead of the tests.
func TestMain(m *testing.M) {
	if cluster.IsWorker() {
		os.Exit(testWorker())
	}
	goleak.VerifyTestMain(m)
}

func testWorker() int {
	cfg := cluster.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	err := cluster.Run(cfg, func(w *cluster.Worker) error {
		return w.Serve(&http.Server{Handler: leaky.Handler()})
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "test worker:", err)
		return 1
	}
	return 0
}
