package proxy

import "net/http"

// fullDuplex lets the backend's answer reach the client while the upload
// of an HTTP/1 request still arrives (the HTTP/1 server otherwise reads the
// whole body before it writes a response), and reports whether it did: the
// caller then calls endDuplex once the request is forwarded. HTTP/2 streams
// are full duplex already; requests without a body and Upgrade requests
// (whose connection is hijacked) are left alone.
func fullDuplex(w http.ResponseWriter, r *http.Request) bool {
	if r.ProtoMajor != 1 || r.ContentLength == 0 || r.Body == nil || r.Header.Get("Upgrade") != "" {
		return false
	}
	return http.NewResponseController(w).EnableFullDuplex() == nil
}

// endDuplex ends a full-duplex request whose forwarding returned. When the
// backend answered before the end of the upload, the Transport may still
// be reading the body; if that read reaches the end after the server's own
// end-of-request work, net/http panics and closes the client's connection
// (golang/go#68560). Closing the body waits for that read, before the
// handler returns. The flush before it sends the client the answer first:
// a client that finishes its upload only once it has the answer would
// otherwise wait for ever. (The end of a chunked answer is still written
// by the server after the handler returns, so after the upload's end.)
func endDuplex(w http.ResponseWriter, r *http.Request) {
	http.NewResponseController(w).Flush() // fails only on a hijacked connection: nothing to send
	r.Body.Close()
}
