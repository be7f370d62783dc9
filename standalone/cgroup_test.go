package standalone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/logbuf"
	"github.com/memdrain/memdrain/internal/testkit"
)

// The container of TestListenAndServeDrainsBeforeTheOOMKiller. The limit
// leaves the race-enabled test binary room to start; each request keeps
// leakPerRequest, so maxLeakRequests of them pass the limit several times
// over.
const (
	cgroupLimit     = 128 << 20
	leakPerRequest  = 256 << 10
	maxLeakRequests = 4 * cgroupLimit / leakPerRequest
)

// leakInCgroup is the child of TestListenAndServeDrainsBeforeTheOOMKiller:
// a server that keeps leakPerRequest of every request, with no memory limit
// of its own (the test's cgroup gives the default), that exits with the
// drain's exit code.
func leakInCgroup() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(2)
	}
	fmt.Println(ln.Addr().String())
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	opts, err := OptionsFromEnv(Options{Listener: ln, Logger: log})
	if err != nil {
		log.Error("options", "err", err)
		os.Exit(2)
	}
	c, err := drain.New(drain.Config{Timeout: waitLimit, Logger: log})
	if err != nil {
		log.Error("controller", "err", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var kept [][]byte
	leak := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, leakPerRequest)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // make the pages resident, as a real leak's are
		}
		mu.Lock()
		kept = append(kept, b)
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	res, err := ListenAndServe(context.Background(), &http.Server{Handler: leak}, c, opts)
	if err != nil {
		log.Error("ListenAndServe", "err", err)
		os.Exit(1)
	}
	os.Exit(res.ExitCode())
}

// TestListenAndServeDrainsBeforeTheOOMKiller: a server given no memory
// limit, run in a memory cgroup with one, takes 90 % of it as its own,
// drains when a leak passes it and exits with drain.ExitRecycle, before the
// kernel's OOM killer would SIGKILL it. A client that retries only a
// refused connection (a Service routes those to another pod) sees no
// failed request.
func TestListenAndServeDrainsBeforeTheOOMKiller(t *testing.T) {
	cg := testkit.NewMemoryCgroup(t, cgroupLimit)

	// The shell puts itself in the cgroup, then becomes the server: the
	// server allocates nothing outside it.
	script := `echo $$ > "$0" && exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, cg.Procs(), os.Args[0]}, childArgs...)...)
	cmd.Env = append(os.Environ(), childEnv+"=cgroup-leak", "MEMDRAIN_CHECK_INTERVAL=10ms")
	logs := &logbuf.Buffer{}
	cmd.Stderr = logs
	addr := startCmd(t, cmd)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	client := &http.Client{Transport: &http.Transport{}, Timeout: waitLimit}
	defer client.CloseIdleConnections()
	served, refused, failed := 0, 0, 0
	for i := 0; i < maxLeakRequests && refused == 0; i++ {
		resp, body, err := testkit.Get(client, "http://"+addr)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			refused++ // the listener is closed: a Service would route this one elsewhere
		case err != nil:
			failed++
			t.Logf("request %d: %v", i, err)
		case resp.StatusCode != http.StatusOK || body != "ok":
			failed++
			t.Logf("request %d: %d %q", i, resp.StatusCode, body)
		default:
			served++
		}
	}
	t.Logf("%d requests served, then %d refused; peak %s", served, refused, cg.Read(t, cg.PeakFile))

	var err error
	select {
	case err = <-exited:
	case <-time.After(waitLimit):
		t.Fatalf("the server did not exit after %d requests of %d bytes each", served, leakPerRequest)
	}
	assert.Zero(t, failed, "failed requests")
	assert.Positive(t, served)
	assert.Equal(t, 1, refused, "the client stopped at the first refused connection, after the drain")
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "the server must exit with %d, got %v; its log:\n%s", drain.ExitRecycle, err, logs)
	status := exit.Sys().(syscall.WaitStatus)
	require.False(t, status.Signaled(), "killed by %v, not drained; its log:\n%s", status.Signal(), logs)
	assert.Equal(t, drain.ExitRecycle, status.ExitStatus(), "its log:\n%s", logs)
	assert.Contains(t, cg.Read(t, cg.OOMFile), "oom_kill 0", "the kernel killed nothing in the cgroup")
	assert.Contains(t, logs.String(), "90% of the cgroup limit 128MiB ("+cg.Version, "the limit it chose, and why")
	assert.Contains(t, logs.String(), "memory limit passed")
}
