//go:build linux || darwin

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestARecycleClosesNoClientConnection: kept-alive connections and a
// connection whose request has not arrived yet outlive the workers they
// were accepted by. The draining workers hand them to serving ones, so
// their drains end with their last request, long before the deadline.
func TestARecycleClosesNoClientConnection(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, DrainTimeout: 10 * time.Minute}, behaveNormally)
	first := h.waitReady(2)

	// Several kept-alive connections, spread over both workers.
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := tracedGet(client, h.url+"/work?ms=20")
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	silent, err := net.Dial("tcp", h.url[len("http://"):])
	require.NoError(t, err)
	defer silent.Close()

	h.c.Reload()
	for planned := 0; planned < 2; {
		e := h.waitFor("the reload", func(e Event) bool { return e.Kind == ExitedPlanned || e.Kind == Killed })
		require.Equal(t, ExitedPlanned, e.Kind, "a drain outlived its deadline")
		assert.Contains(t, first, e.Pid)
		planned++
	}

	for range 16 {
		pid, reused, err := tracedGet(client, h.url+"/work?ms=1")
		require.NoError(t, err)
		assert.True(t, reused, "the request went over a connection opened before the reload")
		assert.NotContains(t, first, pid, "served by a new worker")
	}
	_, err = io.WriteString(silent, "GET /work?ms=1 HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, silent.SetReadDeadline(time.Now().Add(waitLimit)))
	resp, err := http.ReadResponse(bufio.NewReader(silent), nil)
	require.NoError(t, err, "the silent connection is served after the reload")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.False(t, resp.Close)
	assert.Zero(t, h.count(Killed))
}

// tracedGet returns the serving worker's pid and whether the request went
// over a reused connection.
func tracedGet(client *http.Client, url string) (pid int, reused bool, err error) {
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	_, err = fmt.Sscan(resp.Header.Get("X-Worker-Pid"), &pid)
	return pid, reused, err
}

// TestConnectionsQueuedForAWorkerThatDiesGoToAnother: connections handed
// to a worker that dies before it took them are neither closed with it nor
// dropped by the master: the master takes back those it had not written
// and those queued on the dead worker's socket, and gives them to a worker
// that serves, parked until one does. B is stopped (SIGSTOP), so that
// everything handed to it stays queued; A, told to drain by a signal of
// its own, hands its idle connections to B, the only worker serving; then
// B is killed. Every connection still answers its next request.
func TestConnectionsQueuedForAWorkerThatDiesGoToAnother(t *testing.T) {
	h := startCluster(t, Config{Workers: 2, DrainTimeout: 10 * time.Minute, BackoffMin: 10 * time.Millisecond}, behaveNormally)
	pids := h.waitReady(2)
	addr := h.url[len("http://"):]

	// Kept-alive connections, as many as the hand-off socket cannot queue.
	byPid := map[int][]rawClient{}
	for range 48 {
		c := dialRaw(t, addr)
		pid, err := c.request()
		require.NoError(t, err)
		byPid[pid] = append(byPid[pid], c)
	}
	a, b := pids[0], pids[1]
	if len(byPid[b]) > len(byPid[a]) {
		a, b = b, a
	}
	handed := byPid[a]
	t.Logf("%d connections on A, %d on B", len(handed), len(byPid[b]))
	require.Greater(t, len(handed), 10, "more than a hand-off socket queues")

	require.NoError(t, syscall.Kill(b, syscall.SIGSTOP))
	killAtCleanup(t, b)
	require.NoError(t, syscall.Kill(a, syscall.SIGTERM))
	h.waitFor("A's exit", func(e Event) bool { return e.Pid == a && (e.Kind == ExitedPlanned || e.Kind == ExitedAccidental) })
	require.NoError(t, syscall.Kill(b, syscall.SIGKILL))
	h.waitFor("B's exit", func(e Event) bool { return e.Pid == b && e.Kind == ExitedAccidental })

	for i, c := range handed {
		pid, err := c.request()
		require.NoError(t, err, "connection %d of %d, handed to a worker that died", i+1, len(handed))
		assert.NotContains(t, []int{a, b}, pid)
	}
}

// TestAHandOffWithNoWorkerServingWaitsForOne: the only worker drains on a
// signal of its own, before any replacement is serving. Its idle
// connections are parked by the master, not closed, and served by the
// worker respawned in its slot.
func TestAHandOffWithNoWorkerServingWaitsForOne(t *testing.T) {
	h := startCluster(t, Config{Workers: 1, DrainTimeout: 10 * time.Minute, BackoffMin: 10 * time.Millisecond}, behaveNormally)
	old := h.waitReady(1)[0]
	var idle []rawClient
	for range 4 {
		c := dialRaw(t, h.url[len("http://"):])
		_, err := c.request()
		require.NoError(t, err)
		idle = append(idle, c)
	}
	require.NoError(t, syscall.Kill(old, syscall.SIGTERM))
	h.waitFor("its exit", func(e Event) bool { return e.Pid == old && (e.Kind == ExitedPlanned || e.Kind == ExitedAccidental) })
	for i, c := range idle {
		pid, err := c.request()
		require.NoError(t, err, "connection %d of %d", i+1, len(idle))
		assert.NotEqual(t, old, pid)
	}
}

// rawClient is a kept-alive HTTP/1.1 connection driven by hand, so that a
// test knows which connection each request goes over.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return rawClient{conn, bufio.NewReader(conn)}
}

// request sends a GET and returns the pid of the worker that answered it;
// a response that closes the connection is an error.
func (c rawClient) request() (pid int, err error) {
	if err := c.conn.SetDeadline(time.Now().Add(waitLimit)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(c.conn, "GET /work?ms=1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Close {
		return 0, fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	_, err = fmt.Sscan(resp.Header.Get("X-Worker-Pid"), &pid)
	return pid, err
}

// TestHandOffsAreSpreadOverTheServingWorkers: the workers' request counts
// are up to a CheckInterval old, so the connections a draining worker
// hands off at once must not all go to the one that last reported least.
func TestHandOffsAreSpreadOverTheServingWorkers(t *testing.T) {
	m, _ := unitMaster(t, Config{})
	draining := &proc{pid: 1, state: StateDraining, handoffs: newHandoffQueue()}
	a := &proc{pid: 2, state: StateServing, handoffs: newHandoffQueue()}
	b := &proc{pid: 3, state: StateServing, handoffs: newHandoffQueue(), inFlight: 1}
	for _, p := range []*proc{draining, a, b} {
		m.procs[p.pid] = p
	}
	for range 10 {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		w.Close()
		m.routeHandoff(evHandoff{draining, passedConn{file: r, payload: []byte{0}}})
	}
	routed := func(p *proc) int {
		conns := p.handoffs.takeAll()
		for _, pc := range conns {
			pc.file.Close()
		}
		return len(conns)
	}
	toA, toB := routed(a), routed(b)
	assert.Equal(t, 10, toA+toB)
	assert.InDelta(t, toA, toB, 2, "a got %d, b got %d", toA, toB)
	for _, p := range []*proc{a, b} {
		p.handoffs.close()
	}
}

// TestAWorkerThatSendsAConnectionBackIsHandedNothingMore: it began draining
// before the master knew; without this the connection would bounce between
// it and the master until it exits.
func TestAWorkerThatSendsAConnectionBackIsHandedNothingMore(t *testing.T) {
	m, _ := unitMaster(t, Config{})
	early := &proc{pid: 1, state: StateServing, handoffs: newHandoffQueue()}
	other := &proc{pid: 2, state: StateServing, handoffs: newHandoffQueue(), inFlight: 100}
	for _, p := range []*proc{early, other} {
		m.procs[p.pid] = p
	}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	w.Close()
	m.routeHandoff(evHandoff{early, passedConn{file: r, payload: []byte{0 | returned}}})
	assert.True(t, early.refusesHandoffs)
	sent := other.handoffs.takeAll()
	require.Len(t, sent, 1, "routed to the other worker")
	assert.Equal(t, []byte{0}, sent[0].payload, "without the mark")
	sent[0].file.Close()

	r, w, err = os.Pipe()
	require.NoError(t, err)
	w.Close()
	m.routeHandoff(evHandoff{nil, passedConn{file: r, payload: []byte{0}}})
	assert.Empty(t, early.handoffs.takeAll(), "the worker that sent one back gets none, though it has least in flight")
	for _, pc := range other.handoffs.takeAll() {
		pc.file.Close()
	}
	early.handoffs.close()
	other.handoffs.close()
}

// TestAShutdownHandsOffOnlyConnectionsWithNothingRead: at a shutdown the
// master closes what it is handed, so a connection with part of a request
// read stays and is served.
func TestAShutdownHandsOffOnlyConnectionsWithNothingRead(t *testing.T) {
	for reason, partOfARequest := range map[drain.Reason]bool{drain.Memory: true, drain.Reload: true, drain.Signal: false, drain.Supervisor: false} {
		c, err := drain.New(drain.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		c.Start(reason)
		ln := &handoffListener{out: &handoffOut{drain: c}}
		assert.True(t, ln.CanHandoff(0), "%v: an idle connection", reason)
		assert.Equal(t, partOfARequest, ln.CanHandoff(2), "%v: a connection with 2 bytes read", reason)
	}
}

// TestACutHandOffIsDroppedNotDelivered: a payload longer than the receiver
// takes would reach the next worker as half a request.
func TestACutHandOffIsDroppedNotDelivered(t *testing.T) {
	a, b, err := socketPair(syscall.SOCK_DGRAM)
	require.NoError(t, err)
	defer a.Close()
	bconn, err := net.FileConn(b)
	b.Close()
	require.NoError(t, err)
	defer bconn.Close()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.NoError(t, sendConn(bconn.(*net.UnixConn), passedConn{file: r, payload: make([]byte, maxHandoffPayload+1)}))
	require.NoError(t, sendConn(bconn.(*net.UnixConn), passedConn{file: r, payload: []byte{0, 'G'}}))
	got, err := receiveConn(a.(*net.UnixConn))
	require.NoError(t, err)
	defer got.file.Close()
	assert.Equal(t, []byte{0, 'G'}, got.payload, "the cut one was skipped")
}
