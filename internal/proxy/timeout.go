package proxy

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// errHung is the cause of a request canceled by RequestTimeout.
var errHung = errors.New("no response header within the request timeout")

// headerTimeout is a RoundTripper that cancels a request whose response
// header has not arrived within timeout. The clock stops when RoundTrip
// returns, that is when the header arrives: a streaming response or an
// open tunnel is never timed out.
type headerTimeout struct {
	next    http.RoundTripper
	timeout time.Duration
}

func (t *headerTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	// The context must outlive RoundTrip (the body is read after it), so
	// it is not canceled on success: it ends with the inbound request's.
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.timeout, func() { cancel(errHung) })
	res, err := t.next.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() {
		// The timer fired: whatever RoundTrip returned raced it.
		if err == nil {
			res.Body.Close()
		}
		return nil, errHung
	}
	return res, err
}
