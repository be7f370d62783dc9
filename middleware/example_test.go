package middleware_test

import (
	"context"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/middleware"
)

// The counter alone, for a program that runs its own server: the
// middleware counts each request, adds "Connection: close" to responses
// written during a drain, and refuses requests after it with 503.
// Setting BaseContext saves the middleware a copy of each request.
func ExampleNew() {
	c, err := drain.New(drain.Config{})
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           middleware.New(c)(http.NotFoundHandler()),
		BaseContext:       func(net.Listener) context.Context { return drain.NewContext(context.Background(), c) },
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.ListenAndServe()

	c.Start(drain.Signal)
	<-c.Done() // the last request has ended
	srv.Close()
}
