package drain

import "net/http"

// Handler returns an http.Handler that serves each request with next while
// counting it as one unit of work in c:
//
//   - the count comes back down when next returns, panics, or after it
//     hijacked the connection and returned;
//   - every response whose header is written after the drain started
//     carries "Connection: close", whenever its request began, so HTTP/1
//     clients move to another connection and HTTP/2 connections are sent
//     GOAWAY;
//   - once the drain has ended, a request is answered "503 Service
//     Unavailable" with "Retry-After" and "Connection: close", never reset;
//   - the request's context carries c (see FromContext and
//     DrainingFromContext).
//
// The ResponseWriter next receives wraps the server's and keeps its
// optional interfaces (Flusher, Hijacker, io.ReaderFrom, Pusher) and
// http.ResponseController's methods. A handler must not use it after it
// returns: it is reused.
//
// A nil next serves http.DefaultServeMux, as http.Server does. Handler
// panics if c is nil, when the handler is built rather than on a request.
func (c *Controller) Handler(next http.Handler) http.Handler {
	if c == nil {
		panic("drain: Handler called on a nil *Controller")
	}
	if next == nil {
		next = http.DefaultServeMux
	}
	return &handler{c: c, next: next}
}

type handler struct {
	c    *Controller
	next http.Handler
	// servedByServe is set by Serve, which puts c into every request's
	// context through BaseContext: no request copy is needed.
	servedByServe bool
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	state := h.c.add(unit)
	if state&flagDone != 0 {
		refuse(w)
		return
	}
	if !h.servedByServe && FromContext(r.Context()) != h.c {
		r = r.WithContext(NewContext(r.Context(), h.c))
	}
	cw := wrapWriter(w, h.c, r.ProtoMajor == 2 && onTwoStepConn(r.Context()))
	defer h.finish(cw)
	h.next.ServeHTTP(cw, r)
}

// finish ends a request's unit of work, after it returned or panicked.
func (h *handler) finish(cw http.ResponseWriter) {
	finishWriter(cw)
	h.c.Release()
}

func refuse(w http.ResponseWriter) {
	header := w.Header()
	header.Set("Connection", "close")
	header.Set("Retry-After", "1")
	http.Error(w, "503 Service Unavailable: this server has drained", http.StatusServiceUnavailable)
}
