package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"testing"
)

// A client's keep-alive connection outlives the backend it was served by:
// drained, removed and stopped, while a new one takes over.
func TestClientConnSurvivesRecycle(t *testing.T) {
	e := newEnv(t, Options{})
	a, b := e.backend(1, "a"), e.backend(2, "b")
	e.p.Add(a.id, a.addr())

	var conns []httptrace.GotConnInfo
	get := func() result {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { conns = append(conns, info) }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", e.front.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		return e.do(req)
	}
	if r := get(); r.backend != a.name {
		t.Fatalf("first request: %+v; want a", r)
	}
	e.p.Add(b.id, b.addr())
	recv(t, e.p.Drain(a.id), "the drain of a")
	e.p.Remove(a.id)
	a.srv.Close()
	if r := get(); r.backend != b.name {
		t.Fatalf("request after the recycle: %+v; want b", r)
	}
	if len(conns) != 2 || !conns[1].Reused || conns[0].Conn != conns[1].Conn {
		t.Fatalf("client connections: %+v; want the first one reused", conns)
	}
}

// A front server speaking HTTP/1 and h2c serves an h2c client through the
// proxy, and the backend sees the client's Host and X-Forwarded-* headers.
func TestH2CFront(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.backend(1, "a")
	e.p.Add(a.id, a.addr())

	front := httptest.NewUnstartedServer(e.p)
	front.Config.Protocols = new(http.Protocols)
	front.Config.Protocols.SetHTTP1(true)
	front.Config.Protocols.SetUnencryptedHTTP2(true)
	front.Start()
	defer front.Close()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()

	res, err := (&http.Client{Transport: tr, Timeout: wait}).Get(front.URL + "/headers")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	host := front.Listener.Addr().String()
	want := map[string]string{
		"X-Backend":              "a",
		"X-Seen-Host":            host,
		"X-Seen-Forwarded-For":   "127.0.0.1",
		"X-Seen-Forwarded-Proto": "http",
		"X-Seen-Forwarded-Host":  host,
	}
	if res.StatusCode != 200 || res.ProtoMajor != 2 {
		t.Fatalf("h2c client: %d over %s; want 200 over HTTP/2", res.StatusCode, res.Proto)
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %q; want %q", k, got, v)
		}
	}

	// An upload over the same HTTP/2 connection.
	const size = 1 << 20
	res, err = (&http.Client{Transport: tr, Timeout: wait}).Post(front.URL+"/count", "application/octet-stream", &zeros{left: size})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || res.ProtoMajor != 2 || string(body) != strconv.Itoa(size) {
		t.Fatalf("h2c upload: %d over %s, %q, %v; want 200 over HTTP/2 and %d", res.StatusCode, res.Proto, body, err, size)
	}
}
