package drain

import "context"

type contextKey struct{}

// NewContext returns a copy of ctx that carries c. Requests served by Serve,
// or passed through Handler, carry their Controller this way.
func NewContext(ctx context.Context, c *Controller) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// FromContext returns the Controller carried by ctx, or nil if there is none.
func FromContext(ctx context.Context) *Controller {
	c, _ := ctx.Value(contextKey{}).(*Controller)
	return c
}

// DrainingFromContext returns the Draining channel of the Controller carried
// by ctx. With no Controller it returns nil, a channel that never closes, so
// a handler can always select on it.
func DrainingFromContext(ctx context.Context) <-chan struct{} {
	if c := FromContext(ctx); c != nil {
		return c.Draining()
	}
	return nil
}
