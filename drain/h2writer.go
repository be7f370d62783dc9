package drain

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// "Connection: close" on an HTTP/2 response makes net/http's HTTP/2 server
// send its one GOAWAY at once, refusing the streams its client has on the
// way. The drain adds that header to every response written during the
// drain (closingWriter), for servers that get no GOAWAY otherwise. On a
// connection that gets the two-step GOAWAY (goaway.go), the header is
// taken out again just before the server reads it: the two-step sends the
// GOAWAY, without refusing anything. A program's own "Connection: close"
// is kept until the drain starts, and then dropped for the same reason.

// h2Handler serves an HTTP/2 connection's requests with next, through
// h2Writers. It passes on next's BaseContext, through which net/http gives
// the HTTP/2 server the connection's base context.
type h2Handler struct {
	next http.Handler
	hc   *h2Conn
}

func (h h2Handler) BaseContext() context.Context {
	if bc, ok := h.next.(interface{ BaseContext() context.Context }); ok {
		return bc.BaseContext()
	}
	return nil // the HTTP/2 server's default, as for a handler without one
}

func (h h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hw := h2Writers.Get().(*h2Writer)
	hw.ResponseWriter, hw.r, hw.hc = w, r, h.hc
	defer func() {
		*hw = h2Writer{}
		h2Writers.Put(hw)
	}()
	h.next.ServeHTTP(hw, r)
	// The server writes the header of a handler that wrote nothing once
	// it has returned; the drain's handler marks it as it returns.
	hw.unmark()
}

var h2Writers = sync.Pool{New: func() any { return new(h2Writer) }}

// h2Writer is net/http's HTTP/2 response, without "Connection: close"
// during the drain. It keeps the response's Flusher and Pusher, and
// unwraps for http.ResponseController.
type h2Writer struct {
	http.ResponseWriter
	r  *http.Request
	hc *h2Conn
}

// unmark takes "Connection: close" out of the header, during the drain.
func (w *h2Writer) unmark() {
	h := w.ResponseWriter.Header()
	if h.Get("Connection") != "close" {
		return
	}
	if c := FromContext(w.r.Context()); (c != nil && c.IsDraining()) || w.hc.isAsked() {
		h.Del("Connection")
	}
}

func (w *h2Writer) WriteHeader(code int) {
	w.unmark()
	w.ResponseWriter.WriteHeader(code)
}

func (w *h2Writer) Write(p []byte) (int, error) {
	w.unmark()
	return w.ResponseWriter.Write(p)
}

func (w *h2Writer) WriteString(s string) (int, error) {
	w.unmark()
	return io.WriteString(w.ResponseWriter, s)
}

func (w *h2Writer) Flush() {
	w.unmark()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *h2Writer) FlushError() error {
	w.unmark()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *h2Writer) Push(target string, opts *http.PushOptions) error {
	if p, ok := w.ResponseWriter.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *h2Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
