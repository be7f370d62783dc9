package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/memdrain/memdrain/drain"
)

// The master and each worker talk over a private socket pair that the
// worker inherits (never a path on disk), one JSON object per line. Worker
// to master: ready, recycle (with a reason), stats. Master to worker: drain
// (with a reason). The end of the stream tells either side the other is
// gone.
const (
	msgReady   = "ready"
	msgRecycle = "recycle"
	msgStats   = "stats"
	msgDrain   = "drain"
)

type message struct {
	Type     string       `json:"type"`
	Reason   drain.Reason `json:"reason,omitempty"`
	InFlight int          `json:"in_flight,omitempty"`
	Served   uint64       `json:"served,omitempty"`
}

// channel is one end of the socket pair. Sends are safe from several
// goroutines; receive from one.
type channel struct {
	conn    net.Conn
	scanner *bufio.Scanner
	mu      sync.Mutex
}

func newChannel(conn net.Conn) *channel {
	return &channel{conn: conn, scanner: bufio.NewScanner(conn)}
}

// sendTimeout keeps a stuck peer from blocking the sender: the master's
// loop must never wait on one worker.
const sendTimeout = 2 * time.Second

func (ch *channel) send(m message) error {
	line, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.conn.SetWriteDeadline(time.Now().Add(sendTimeout))
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
	var m message
	if err := json.Unmarshal(ch.scanner.Bytes(), &m); err != nil {
		return message{}, fmt.Errorf("cluster: bad message %q: %w", ch.scanner.Bytes(), err)
	}
	return m, nil
}

func (ch *channel) close() error { return ch.conn.Close() }
