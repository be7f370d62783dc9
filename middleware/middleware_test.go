package middleware_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const waitLimit = 10 * time.Second

func newController(t testing.TB) *drain.Controller {
	t.Helper()
	c, err := drain.New(drain.Config{Timeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return c
}

// serve runs h on a real server on 127.0.0.1 and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = nil
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNewRejectsANilController(t *testing.T) {
	assert.PanicsWithValue(t, "middleware.New: nil *drain.Controller", func() { middleware.New(nil) })
}

func TestNilHandlerServesTheDefaultMux(t *testing.T) {
	c := newController(t)
	h := middleware.New(c)(nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/no-such-path", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code, "http.DefaultServeMux answers unknown paths with 404")
}

func TestRequestsAreCountedWhileTheyRun(t *testing.T) {
	c := newController(t)
	inside := make(chan int, 1)
	url := serve(t, middleware.New(c)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside <- c.InFlight()
	})))
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 1, <-inside)
	assert.Zero(t, c.InFlight())
}

func TestAPanickingHandlerIsStillCountedDown(t *testing.T) {
	c := newController(t)
	url := serve(t, middleware.New(c)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler) // net/http's own way to abort quietly
	})))
	_, err := http.Get(url)
	require.Error(t, err, "net/http closes the connection of a panicking handler")
	assert.Zero(t, c.InFlight(), "the panic must not leak a unit")
	c.Start(drain.Manual)
	assert.True(t, closed(c.Done()))
}

func TestAHijackedConnectionCountsUntilItsHandlerReturns(t *testing.T) {
	c := newController(t)
	hijacked := make(chan struct{})
	finish := make(chan struct{})
	url := serve(t, middleware.New(c)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		close(hijacked)
		<-finish
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		buf.Flush()
	})))
	conn, err := net.Dial("tcp", url[len("http://"):])
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	select {
	case <-hijacked:
	case <-time.After(waitLimit):
		t.Fatal("the handler did not hijack")
	}
	c.Start(drain.Manual)
	assert.False(t, closed(c.Done()), "the hijacked connection's handler is still running")
	close(finish)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("the drain did not end when the hijacking handler returned")
	}
}

func TestDuringTheDrainResponsesCloseTheConnection(t *testing.T) {
	c := newController(t)
	require.True(t, c.Acquire()) // other work keeps the drain open
	url := serve(t, middleware.New(c)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})))
	c.Start(drain.Manual)
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, resp.Close, "Connection: close")
	c.Release()
}

func TestAfterTheDrainRequestsGet503(t *testing.T) {
	c := newController(t)
	url := serve(t, middleware.New(c)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a drained server must not run the handler")
	})))
	c.Start(drain.Manual)
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.True(t, resp.Close)
}

func TestTheRequestContextTellsWhenTheDrainStarts(t *testing.T) {
	c := newController(t)
	got := make(chan (<-chan struct{}), 1)
	url := serve(t, middleware.New(c)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- drain.DrainingFromContext(r.Context())
	})))
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	draining := <-got
	require.NotNil(t, draining)
	assert.False(t, closed(draining))
	c.Start(drain.Manual)
	assert.True(t, closed(draining))
	assert.Nil(t, drain.DrainingFromContext(context.Background()), "no controller: a channel that never closes")
}
