package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// The master and each worker talk over a private socket pair that the
// worker inherits (never a path on disk), one JSON object per line. Worker
// to master: ready, recycle (with a reason), stats, pong (the answer to a
// ping, with the error of Config.Health if it failed). Master to worker:
// drain (with a reason), ping. The end of the stream tells either side the
// other is gone.
const (
	msgReady   = "ready"
	msgRecycle = "recycle"
	msgStats   = "stats"
	msgPong    = "pong"
	msgDrain   = "drain"
	msgPing    = "ping"
)

type message struct {
	Type     string       `json:"type"`
	Reason   drain.Reason `json:"reason,omitempty"`
	InFlight int          `json:"in_flight,omitempty"`
	Served   uint64       `json:"served,omitempty"`
	// Counts, sent with stats, says that the worker counts its requests
	// (Worker.Handler): a Served of 0 is then a count, not a silence.
	Counts bool   `json:"counts,omitempty"`
	Seq    uint64 `json:"seq,omitempty"` // a ping's number, echoed by its pong
	Err    string `json:"err,omitempty"` // a pong's failed health check
	// Pongs, sent with ready, says that the worker answers pings. A
	// worker of a binary from before the heartbeat is never judged by it.
	Pongs bool `json:"pongs,omitempty"`
}

// channel is one end of the socket pair. Sends are safe from several
// goroutines; receive from one.
//
// Each message is one write (write) and one line read (receive): a message
// that later carries a descriptor (SCM_RIGHTS) changes these two functions
// only, write to UnixConn.WriteMsgUnix with the rights beside the line, and
// receive to a reader over ReadMsgUnix that keeps the descriptors in the
// order of the lines they came with.
type channel struct {
	conn      net.Conn
	scanner   *bufio.Scanner
	mu        sync.Mutex // one write at a time, so lines never interleave
	closed    chan struct{}
	closeOnce sync.Once
}

// maxMessage bounds one message's line; a worker cuts a Health error to
// fit (see maxHealthError).
const maxMessage = 64 << 10

func newChannel(conn net.Conn) *channel {
	scanner := bufio.NewScanner(conn)
	scanner.Buffer(make([]byte, 0, 4096), maxMessage)
	return &channel{conn: conn, scanner: scanner, closed: make(chan struct{})}
}

// sendTimeout keeps a stuck master from blocking a worker's goroutine for
// long; the master never waits on a worker at all (see link).
const sendTimeout = 2 * time.Second

// send writes m, waiting up to sendTimeout. It is the worker's way to send:
// the worker's goroutines may wait on the master, whose reader always
// reads.
func (ch *channel) send(m message) error {
	return ch.write(m, time.Now().Add(sendTimeout))
}

// write writes m as one line, giving up at deadline. A write that fails
// may have written part of the line: the stream is then broken.
func (ch *channel) write(m message, deadline time.Time) error {
	line, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.conn.SetWriteDeadline(deadline)
	_, err = ch.conn.Write(append(line, '\n'))
	return err
}

// receive returns the next message, or an error at the end of the stream.
func (ch *channel) receive() (message, error) {
	if !ch.scanner.Scan() {
		if err := ch.scanner.Err(); err != nil {
			return message{}, err
		}
		return message{}, net.ErrClosed
	}
	for {
		var m message
		if err := json.Unmarshal(ch.scanner.Bytes(), &m); err == nil {
			return m, nil
		}
		// A line that is not a message is skipped: ending here would
		// deafen the master to a worker that still runs.
		if !ch.scanner.Scan() {
			if err := ch.scanner.Err(); err != nil {
				return message{}, err
			}
			return message{}, net.ErrClosed
		}
	}
}

func (ch *channel) close() error {
	ch.closeOnce.Do(func() { close(ch.closed) })
	return ch.conn.Close()
}

// errBacklog is what link.send returns when its queue is full: the worker
// has not read its control socket for a long while.
var errBacklog = errors.New("cluster: the worker does not read its control socket: messages to it are backed up")

// linkQueue is how many messages to one worker may wait to be written. The
// master sends a worker one ping at a time and one drain in its life, so a
// full queue means its writer is stuck on a worker that does not read.
const linkQueue = 16

// link is the master's end of one worker's control socket. Its send never
// blocks: the master's loop must never wait on one worker, and a stopped
// worker stops reading. A goroutine of its own writes the queued messages,
// and exits when the channel is closed (once the worker has exited).
type link struct {
	*channel
	queue chan message
}

// newLink starts the writer of conn. Each write may take up to timeout.
// failed is called from the writer, never from the caller of send, for
// each message that could not be written; after one failure every later
// message fails too, since a failed write may have left part of a line.
func newLink(conn net.Conn, timeout time.Duration, failed func(message, error)) *link {
	l := &link{channel: newChannel(conn), queue: make(chan message, linkQueue)}
	go func() {
		var broken error
		for {
			select {
			case <-l.closed:
				return
			case m := <-l.queue:
				if broken == nil {
					broken = l.write(m, time.Now().Add(timeout))
				}
				if broken != nil {
					failed(m, broken)
				}
			}
		}
	}()
	return l
}

// send queues m for the worker and returns at once: errBacklog if the
// queue is full, net.ErrClosed once the worker has exited. A message that
// was queued may still fail to be written (see newLink).
func (l *link) send(m message) error {
	select {
	case <-l.closed:
		return net.ErrClosed
	default:
	}
	select {
	case l.queue <- m:
		return nil
	default:
		return errBacklog
	}
}
