package drain

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
)

// closingWriter adds "Connection: close" to a response whose header is
// written after the drain started, whenever its request began: a client
// that was answered during the drain must not send its next request to this
// process. HTTP/1 then closes the connection after the response; HTTP/2
// turns the header into GOAWAY.
//
// On an HTTP/2 connection that Serve sends the two-step GOAWAY (goaway.go),
// the header does the opposite: net/http's one GOAWAY would refuse the
// streams the client has on the way. There the drain takes "Connection:
// close" out of every response, the program's own included.
//
// It keeps the optional interfaces of the ResponseWriter it wraps (Flusher,
// Hijacker and io.ReaderFrom for HTTP/1, Pusher for HTTP/2) and unwraps for
// http.ResponseController. Writers are pooled: a handler must not use its
// ResponseWriter after it returns, as net/http already requires.
type closingWriter struct {
	http.ResponseWriter
	c       *Controller
	twoStep bool // the request came on a connection with the two-step GOAWAY
	header  bool // the final header was written, or is being written
}

// mark sets "Connection: close" once, before the final header goes out,
// or takes it out on a two-step connection.
func (w *closingWriter) mark() {
	if w.header {
		return
	}
	w.header = true
	switch h := w.Header(); {
	case !w.c.IsDraining():
	case !w.twoStep:
		h.Set("Connection", "close")
	case h.Get("Connection") == "close":
		h.Del("Connection")
	}
}

func (w *closingWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.mark()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closingWriter) Write(p []byte) (int, error) {
	w.mark()
	return w.ResponseWriter.Write(p)
}

func (w *closingWriter) WriteString(s string) (int, error) {
	w.mark()
	return io.WriteString(w.ResponseWriter, s)
}

func (w *closingWriter) Flush() {
	w.mark()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// http1Writer is a closingWriter over net/http's HTTP/1 response.
type http1Writer struct{ closingWriter }

func (w *http1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.header = true // the response is the handler's own now
	return w.ResponseWriter.(http.Hijacker).Hijack()
}

func (w *http1Writer) ReadFrom(r io.Reader) (int64, error) {
	w.mark()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(w.ResponseWriter, r)
}

// http2Writer is a closingWriter over net/http's HTTP/2 response.
type http2Writer struct{ closingWriter }

func (w *http2Writer) Push(target string, opts *http.PushOptions) error {
	return w.ResponseWriter.(http.Pusher).Push(target, opts)
}

var (
	http1Writers = sync.Pool{New: func() any { return new(http1Writer) }}
	http2Writers = sync.Pool{New: func() any { return new(http2Writer) }}
	otherWriters = sync.Pool{New: func() any { return new(closingWriter) }}
)

// wrapWriter returns w wrapped for c, for a request on a two-step HTTP/2
// connection or not. The wrapper goes back to its pool with finishWriter
// once the handler has returned.
func wrapWriter(w http.ResponseWriter, c *Controller, twoStep bool) http.ResponseWriter {
	base := closingWriter{ResponseWriter: w, c: c, twoStep: twoStep}
	switch w.(type) {
	case http.Hijacker:
		cw := http1Writers.Get().(*http1Writer)
		cw.closingWriter = base
		return cw
	case http.Pusher:
		cw := http2Writers.Get().(*http2Writer)
		cw.closingWriter = base
		return cw
	}
	cw := otherWriters.Get().(*closingWriter)
	*cw = base
	return cw
}

// finishWriter is called once the handler has returned. It marks the
// response of a handler that wrote nothing (net/http writes its header
// after the handler, so this is the last moment to add "Connection:
// close"), then puts the wrapper back in its pool.
func finishWriter(w http.ResponseWriter) {
	switch cw := w.(type) {
	case *http1Writer:
		cw.mark()
		cw.closingWriter = closingWriter{}
		http1Writers.Put(cw)
	case *http2Writer:
		cw.mark()
		cw.closingWriter = closingWriter{}
		http2Writers.Put(cw)
	case *closingWriter:
		cw.mark()
		*cw = closingWriter{}
		otherWriters.Put(cw)
	}
}
