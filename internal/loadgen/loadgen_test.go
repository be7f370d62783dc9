package loadgen

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server answers on 127.0.0.1 and records every request's method and body.
type server struct {
	mu     sync.Mutex
	bodies []string
	url    string
}

func startServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{url: "http://" + ln.Addr().String() + "/"}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, r.Method+" "+string(b))
		s.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// TestAPOSTCarriesItsBodyThroughDelayedWrites: a POST is sent with its body,
// over connections whose writes are delayed, and counted as served.
func TestAPOSTCarriesItsBodyThroughDelayedWrites(t *testing.T) {
	s := startServer(t)
	r := Run(context.Background(), Config{
		URL: s.url, Method: http.MethodPost, Clients: 2, PerClient: 3, KeepAlive: true,
		FirstWrite: time.Millisecond, EveryWrite: time.Millisecond,
	})
	if r.Requests != 6 || r.Failed != 0 || r.Retried != 0 {
		t.Fatalf("%v; want 6 requests, none failed or retried", r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bodies {
		if b != "POST "+PostBody {
			t.Fatalf("the server read %q; want %q", b, "POST "+PostBody)
		}
	}
}

// TestAnUnknownMethodFailsEveryRequestClearly: a method loadgen cannot send
// is every request's failure, named.
func TestAnUnknownMethodFailsEveryRequestClearly(t *testing.T) {
	s := startServer(t)
	r := Run(context.Background(), Config{URL: s.url, Method: "PUT", Clients: 1, PerClient: 1})
	if r.Failed != 1 {
		t.Fatalf("%v; want the request failed", r)
	}
	for kind := range r.Failures {
		if !strings.Contains(kind, `Config.Method "PUT" is not GET or POST`) {
			t.Fatalf("failure %q does not name the field, the value and what is accepted", kind)
		}
	}
}
