package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// runner is a load: it runs until stop closes, and its wait returns when
// its last request ended.
type runner interface {
	run(stop <-chan struct{}, t *tally) (wait func())
}

// loads are the runners of a scenario, started together.
type loads struct {
	stop    chan struct{}
	waits   []func()
	stopped bool
}

func startLoads(t *tally, rs ...runner) *loads {
	l := &loads{stop: make(chan struct{})}
	for _, r := range rs {
		l.waits = append(l.waits, r.run(l.stop, t))
	}
	return l
}

// halt stops sending new requests; those under way end on their own.
func (l *loads) halt() {
	if !l.stopped {
		l.stopped = true
		close(l.stop)
	}
}

// finish halts the loads and waits for their last requests.
func (l *loads) finish() {
	l.halt()
	for _, w := range l.waits {
		w()
	}
}

// hold waits d, or less if ctx ends or one of early closes. It is the
// load's duration, not a synchronisation.
func hold(ctx context.Context, d time.Duration, early ...<-chan struct{}) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var a, b <-chan struct{}
	if len(early) > 0 {
		a = early[0]
	}
	if len(early) > 1 {
		b = early[1]
	}
	select {
	case <-timer.C:
	case <-ctx.Done():
	case <-a:
	case <-b:
	}
}

// probe makes one request with a client of spec and returns its error:
// whether the subject serves that protocol at all.
func probe(spec clientSpec, url string) error {
	spec.timeout = 3 * time.Second
	c := spec.client()
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if spec.proto == h2TLS && resp.ProtoMajor != 2 {
		return fmt.Errorf("%s answered over %s, not HTTP/2", url, resp.Proto)
	}
	return nil
}

// copyFile copies the file at from to a new file at to, with mode.
func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}

// replaceFile puts content at path the way a deploy does: written beside
// it, then renamed over it, so a process running the old file keeps it.
func replaceFile(path string, content []byte) error {
	next := filepath.Join(filepath.Dir(path), ".next-"+filepath.Base(path))
	if err := os.WriteFile(next, content, 0o755); err != nil {
		return err
	}
	return os.Rename(next, path)
}
