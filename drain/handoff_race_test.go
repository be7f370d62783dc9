//go:build linux || darwin

package drain

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memdrain/memdrain/internal/connpass"
	"github.com/memdrain/memdrain/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeLosesNoRequestWrittenAsTheDrainStarts: kept-alive connections
// whose clients write their next request at the very moment the drain
// starts, in pieces of 1, 2 and 3 bytes and the rest, so that the claim of
// an idle connection meets every state of the server's read: nothing
// arrived, fewer bytes than the server peeks for, a partial header, the
// whole request. Each request is answered, here with "Connection: close"
// or by the server the connection was handed to, never lost.
func TestServeLosesNoRequestWrittenAsTheDrainStarts(t *testing.T) {
	const clients = 200
	lnA := listen(t)
	lnB, err := connpass.NewListener(listen(t), nil)
	require.NoError(t, err)
	a := startServer(t, &handingOff{Listener: lnA, to: lnB, passed: make(chan struct{}, clients)}, time.Minute, testkit.Tagged("a"))
	startServer(t, lnB, time.Minute, testkit.Tagged("b"))

	conns := make([]net.Conn, clients)
	readers := make([]*bufio.Reader, clients)
	for i := range conns {
		conn, err := net.Dial("tcp", lnA.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		conns[i], readers[i] = conn, bufio.NewReader(conn)
		require.NoError(t, conn.SetDeadline(time.Now().Add(waitLimit)))
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(readers[i], nil)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	require.Eventually(t, func() bool {
		open := connsOf(a)
		for _, tc := range open {
			tc.mu.Lock()
			st := tc.state
			tc.mu.Unlock()
			if st != http.StateIdle {
				return false
			}
		}
		return len(open) == clients
	}, waitLimit, time.Millisecond, "every connection idle")

	start := make(chan struct{})
	var begun atomic.Int32 // clients that wrote their first piece
	errs := make(chan error, clients)
	servedBy := make(chan string, clients)
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := "POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
			<-start
			for _, n := range []int{1 + i%3, 2, 3} { // the first piece: 1, 2 or 3 bytes
				if _, err := io.WriteString(conn, req[:n]); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				req = req[n:]
				begun.Add(1)
			}
			if _, err := io.WriteString(conn, req); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			resp, err := http.ReadResponse(readers[i], nil)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("client %d: status %d", i, resp.StatusCode)
				return
			}
			servedBy <- resp.Header.Get("X-Served-By")
		}()
	}
	close(start)
	for begun.Load() < clients { // the drain starts with the requests under way
		runtime.Gosched()
	}
	a.c.Start(Memory)
	wg.Wait()
	close(errs)
	close(servedBy)
	for err := range errs {
		t.Error(err)
	}
	by := map[string]int{}
	for s := range servedBy {
		by[s]++
	}
	t.Logf("served by: %v", by)
	assert.Equal(t, clients, by["a"]+by["b"])
	assert.False(t, a.wait(t).res.DeadlineExceeded)
}
