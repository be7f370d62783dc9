package drain

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// h2Frame is one frame as a raw HTTP/2 client reads it.
type h2Frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// rawH2 is an HTTP/2 client written by hand, to see the server's frames
// in their order: it sends the preface and its SETTINGS, acknowledges the
// server's, and passes every other frame to the test.
type rawH2 struct {
	t      *testing.T
	conn   net.Conn
	scheme byte // HPACK's static index of :scheme
	wmu    sync.Mutex
	frames chan h2Frame
}

func dialRawH2(t *testing.T, addr string, overTLS bool) *rawH2 {
	t.Helper()
	var conn net.Conn
	var err error
	r := &rawH2{t: t, scheme: 0x86, frames: make(chan h2Frame, 64)} // http
	if overTLS {
		r.scheme = 0x87 // https
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	require.NoError(t, err)
	r.conn = conn
	t.Cleanup(func() { conn.Close() })
	_, err = conn.Write(clientPreface)
	require.NoError(t, err)
	r.write(0x4, 0, 0, nil) // SETTINGS
	go r.read()
	return r
}

func (r *rawH2) write(typ, flags byte, stream uint32, payload []byte) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	f := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	f[0], f[1], f[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:], stream)
	_, err := r.conn.Write(append(f, payload...))
	assert.NoError(r.t, err)
}

func (r *rawH2) read() {
	defer close(r.frames)
	for {
		var h [frameHeaderLen]byte
		if _, err := io.ReadFull(r.conn, h[:]); err != nil {
			return
		}
		f := h2Frame{typ: h[3], flags: h[4], stream: binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)}
		f.payload = make([]byte, int(h[0])<<16|int(h[1])<<8|int(h[2]))
		if _, err := io.ReadFull(r.conn, f.payload); err != nil {
			return
		}
		switch {
		case f.typ == 0x4 && f.flags&flagAck == 0:
			r.write(0x4, flagAck, 0, nil)
		case f.typ == 0x4, f.typ == 0x8: // SETTINGS ack, WINDOW_UPDATE
		default:
			r.frames <- f
		}
	}
}

// get opens stream id with a GET request.
func (r *rawH2) get(id uint32) {
	block := []byte{0x82, r.scheme, 0x84, 0x01, 9} // GET, scheme, /, :authority (literal)
	r.write(frameHeaders, flagEndHeaders|0x1, id, append(block, "localhost"...))
}

// next returns the server's next frame.
func (r *rawH2) next() h2Frame {
	r.t.Helper()
	select {
	case f, ok := <-r.frames:
		require.True(r.t, ok, "the server closed the connection")
		return f
	case <-time.After(waitLimit):
		r.t.Fatalf("no frame from the server within %v", waitLimit)
		return h2Frame{}
	}
}

// response reads stream id's response, to its end.
func (r *rawH2) response(id uint32) {
	r.t.Helper()
	f := r.next()
	require.Equal(r.t, h2Frame{typ: frameHeaders, stream: id}, h2Frame{typ: f.typ, stream: f.stream}, "the response's HEADERS")
	for f.flags&flagEndStream == 0 {
		f = r.next()
		require.Equal(r.t, h2Frame{typ: frameData, stream: id}, h2Frame{typ: f.typ, stream: f.stream}, "the response's DATA")
	}
}

// goAway reads a GOAWAY and returns its last stream id, checking NO_ERROR.
func goAwayOf(t *testing.T, f h2Frame) uint32 {
	t.Helper()
	require.Equal(t, byte(frameGoAway), f.typ, "a GOAWAY, not frame type %d", f.typ)
	require.GreaterOrEqual(t, len(f.payload), 8)
	assert.Zero(t, binary.BigEndian.Uint32(f.payload[4:]), "NO_ERROR")
	return binary.BigEndian.Uint32(f.payload) & (1<<31 - 1)
}

// twoStep reads the first GOAWAY and its PING, opens stream inFlight as
// if it had not read them yet, answers the PING, and reads the responses
// of inFlight and of the streams answered, and the server's GOAWAY, which
// must name inFlight.
func (r *rawH2) twoStep(inFlight uint32, answered ...uint32) {
	t := r.t
	t.Helper()
	require.Equal(t, uint32(1<<31-1), goAwayOf(t, r.next()), "the first GOAWAY refuses no stream")
	ping := r.next()
	require.Equal(t, byte(framePing), ping.typ, "a PING follows the first GOAWAY")
	r.get(inFlight)
	r.write(framePing, flagAck, 0, ping.payload)
	want := map[uint32]bool{inFlight: true}
	for _, id := range answered {
		want[id] = true
	}
	var last uint32
	for len(want) > 0 || last == 0 {
		f := r.next()
		switch f.typ {
		case frameGoAway:
			require.Zero(t, last, "one GOAWAY from the server")
			last = goAwayOf(t, f)
		case frameHeaders, frameData:
			require.True(t, want[f.stream], "a response on stream %d", f.stream)
			if f.flags&flagEndStream != 0 {
				delete(want, f.stream)
			}
		default:
			t.Fatalf("frame type %d", f.typ)
		}
	}
	assert.Equal(t, inFlight, last, "the server's GOAWAY names the last stream it took")
}

// closeWatcher is a listener that tells when it is first closed.
type closeWatcher struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeWatcher) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
