//go:build linux || darwin

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

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
