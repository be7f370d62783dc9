package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/memdrain/memdrain/internal/selfsigned"
)

// protocolFlags choose what the workers speak besides HTTP/1.1 in the
// clear: HTTP/2 without TLS (h2c, prior knowledge), and TLS with a
// certificate made up at start. The benchmark harness's stress part uses
// them to drive HTTP/2 and HTTPS clients through recycles.
type protocolFlags struct {
	tls bool
	h2c bool
}

func (p *protocolFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&p.tls, "tls", false, "serve HTTPS (HTTP/1.1 and h2 by ALPN) with a self-signed certificate for 127.0.0.1 and localhost, made up by each worker at start; clients must skip verification")
	fs.BoolVar(&p.h2c, "h2c", false, "also serve HTTP/2 without TLS to clients that speak it with prior knowledge")
}

// check refuses the combinations that cannot work.
func (p *protocolFlags) check(load bool) error {
	if p.tls && load {
		return errors.New("-tls: the example's own load speaks plain HTTP; with -tls run it with -load=false and send HTTPS requests yourself (curl -k)")
	}
	return nil
}

// server returns the workers' server for h, set up for the protocols
// chosen. With -tls it sets srv.TLSConfig, which is how a program asks
// the worker to serve TLS.
func (p *protocolFlags) server(h http.Handler) (*http.Server, error) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if !p.tls && !p.h2c {
		return srv, nil
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(p.h2c)
	if p.tls {
		srv.Protocols.SetHTTP2(true)
		cert, err := selfsigned.New()
		if err != nil {
			return nil, fmt.Errorf("-tls: making a certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	}
	return srv, nil
}
