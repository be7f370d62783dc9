package leaky

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/internal/selfsigned"
)

// Protocols are what a Server speaks besides HTTP/1.1 in the clear.
type Protocols struct {
	// TLS serves HTTPS (HTTP/1.1 and h2 by ALPN) instead, with a
	// certificate for the loopback addresses made up at start
	// (selfsigned.New): clients must skip verification.
	TLS bool
	// H2C also serves HTTP/2 without TLS to clients that speak it with
	// prior knowledge.
	H2C bool
}

// Server returns a server of Handler that speaks p: what the example's
// and the benchmark subject's workers pass to cluster.Worker.Serve. With
// TLS it sets srv.TLSConfig, which is how a program asks the worker to
// serve TLS.
func Server(p Protocols) (*http.Server, error) {
	srv := &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second}
	if !p.TLS && !p.H2C {
		return srv, nil
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(p.H2C)
	if p.TLS {
		srv.Protocols.SetHTTP2(true)
		cert, err := selfsigned.New()
		if err != nil {
			return nil, fmt.Errorf("making a certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	}
	return srv, nil
}
