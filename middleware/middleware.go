// Package middleware counts every HTTP request into a drain.Controller, so
// a drain ends the moment the last request does. It is plain
// func(http.Handler) http.Handler and composes with net/http's ServeMux,
// chi, gorilla/mux and any other router.
//
//	c, _ := drain.New(drain.Config{})
//	handler := middleware.New(c)(mux)
//
// drain.Serve and package cluster apply it for you; use it directly when
// you run the http.Server yourself. A long-lived handler learns that the
// drain started from drain.DrainingFromContext(r.Context()).
package middleware

import (
	"net/http"

	"github.com/memdrain/memdrain/drain"
)

// New returns middleware that serves each request under c, as described by
// drain.Controller.Handler: the request counts as in-flight work until the
// handler returns or panics; during a drain responses carry
// "Connection: close"; after the drain a request is answered 503 with
// Retry-After; the request's context carries c.
//
// New panics if c is nil, when the middleware is built rather than on a
// request.
func New(c *drain.Controller) func(http.Handler) http.Handler {
	if c == nil {
		panic("middleware.New: nil *drain.Controller")
	}
	return c.Handler
}
