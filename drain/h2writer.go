package drain

import (
	"context"
	"net/http"
)

// twoStepKey marks the base context of an HTTP/2 connection that Serve
// sends the two-step GOAWAY: the drain's handler then keeps "Connection:
// close" out of its responses (see closingWriter).
type twoStepKey struct{}

// onTwoStepConn reports whether a request's context comes from a
// connection that gets the two-step GOAWAY.
func onTwoStepConn(ctx context.Context) bool { return ctx.Value(twoStepKey{}) != nil }

// h2Handler serves an HTTP/2 connection's requests with next. net/http
// asks it once for the connection's base context (BaseContext), which it
// marks as a two-step connection's: the mark costs nothing per request.
type h2Handler struct {
	next http.Handler
}

func (h h2Handler) BaseContext() context.Context {
	var ctx context.Context
	if bc, ok := h.next.(interface{ BaseContext() context.Context }); ok {
		ctx = bc.BaseContext()
	}
	if ctx == nil {
		ctx = context.Background() // the HTTP/2 server's default
	}
	return context.WithValue(ctx, twoStepKey{}, true)
}

func (h h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.next.ServeHTTP(w, r) }
