package drain

import "encoding/binary"

// The frame boundaries of an HTTP/2 byte stream (RFC 9113, section 4.1),
// followed without parsing the frames, so that the two-step GOAWAY
// (goaway.go) can put frames of its own between two of the server's and
// recognise the client's answer.

const (
	frameHeaderLen = 9

	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameContinuation = 0x9

	flagAck        = 0x1 // PING
	flagEndStream  = 0x1 // DATA, HEADERS
	flagEndHeaders = 0x4 // HEADERS, PUSH_PROMISE, CONTINUATION
)

// frameScanner follows one direction of an HTTP/2 connection, from its
// first frame (after the client's preface), through any chunking of the
// bytes.
type frameScanner struct {
	hdr   [frameHeaderLen]byte // the current frame's header
	hn    int                  // bytes of it seen
	left  int                  // bytes of the current frame's payload to come
	head  [8]byte              // the first bytes of the current frame's payload
	headN int

	// inBlock: a header block is open (HEADERS or PUSH_PROMISE without
	// END_HEADERS), and only its CONTINUATION frames may come next.
	inBlock bool
	frames  int // whole frames seen
	goAways int // GOAWAY frames seen

	// onFrame, when set, is called at the end of each frame with its type,
	// flags, stream and the first (up to 8) bytes of its payload.
	onFrame func(typ, flags byte, stream uint32, head []byte)
}

// between reports whether the stream is between two frames, where another
// frame may go.
func (s *frameScanner) between() bool {
	return s.hn == 0 && s.left == 0 && !s.inBlock
}

// feed follows p. When stop is set, it is asked at each place in p where
// another frame may go (between two frames, outside a header block), with
// the header of the frame that follows when all of it is in p (nil
// otherwise, at the end of p in particular); feed stops there if it says
// so. feed returns how much of p it followed and whether it stopped.
func (s *frameScanner) feed(p []byte, stop func(next []byte) bool) (int, bool) {
	i := 0
	for {
		if stop != nil && s.between() {
			var next []byte
			if len(p)-i >= frameHeaderLen {
				next = p[i : i+frameHeaderLen]
			}
			if stop(next) {
				return i, true
			}
		}
		if i == len(p) {
			return i, false
		}
		if s.hn < frameHeaderLen {
			k := copy(s.hdr[s.hn:], p[i:])
			s.hn += k
			i += k
			if s.hn < frameHeaderLen {
				continue // p ended inside the header
			}
			s.left = int(s.hdr[0])<<16 | int(s.hdr[1])<<8 | int(s.hdr[2])
			s.headN = 0
			if s.hdr[3] == frameGoAway {
				s.goAways++
			}
		}
		k := min(s.left, len(p)-i)
		if s.headN < len(s.head) {
			s.headN += copy(s.head[s.headN:], p[i:i+k])
		}
		s.left -= k
		i += k
		if s.left == 0 {
			s.endFrame()
		}
	}
}

func (s *frameScanner) endFrame() {
	typ, flags := s.hdr[3], s.hdr[4]
	switch typ {
	case frameHeaders, framePushPromise, frameContinuation:
		s.inBlock = flags&flagEndHeaders == 0
	}
	s.hn = 0
	s.frames++
	if s.onFrame != nil {
		s.onFrame(typ, flags, binary.BigEndian.Uint32(s.hdr[5:])&(1<<31-1), s.head[:s.headN])
	}
}

// goAwayFrame is GOAWAY with NO_ERROR, naming lastStreamID.
func goAwayFrame(lastStreamID uint32) []byte {
	f := make([]byte, frameHeaderLen+8)
	f[2], f[3] = 8, frameGoAway
	binary.BigEndian.PutUint32(f[frameHeaderLen:], lastStreamID)
	return f
}

// pingFrame is PING, not an answer, carrying data.
func pingFrame(data [8]byte) []byte {
	f := make([]byte, frameHeaderLen+8)
	f[2], f[3] = 8, framePing
	copy(f[frameHeaderLen:], data[:])
	return f
}
