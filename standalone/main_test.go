package standalone

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/memdrain/memdrain/drain"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLimit = 10 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// served is what ListenAndServe returned, passed from its goroutine.
type served struct {
	res drain.Result
	err error
}

func newController(t testing.TB, timeout time.Duration) *drain.Controller {
	t.Helper()
	c, err := drain.New(drain.Config{Timeout: timeout, Logger: quiet})
	require.NoError(t, err)
	return c
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}
