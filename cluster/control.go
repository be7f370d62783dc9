package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"
)

// The control socket (Config.Control): a unix socket on which the master
// answers one JSON request per connection with one JSON reply. Each
// connection is served by a goroutine of its own, off the loop: it only
// posts events and waits, bounded, for their answer, so a slow or silent
// client never stalls the supervisor.

// ControlRequest is one request on the control socket.
type ControlRequest struct {
	// Cmd is "status", "reload", "stop" or "recycle".
	Cmd string `json:"cmd"`
	// Worker is the slot to recycle, for "recycle".
	Worker *int `json:"worker,omitempty"`
}

// ControlReply is the answer to a ControlRequest. Error is empty on
// success; Status is set for "status".
type ControlReply struct {
	Error  string         `json:"error,omitempty"`
	Status *ControlStatus `json:"status,omitempty"`
}

// ControlStatus is what "status" answers: the master, its limits (zero
// when off) and every worker process, by slot.
type ControlStatus struct {
	Pid         int            `json:"pid"`     // the master's
	Workers     int            `json:"workers"` // slots
	MaxMemory   uint64         `json:"max_memory"`
	HardMemory  uint64         `json:"hard_memory"`
	TotalMemory uint64         `json:"total_memory"`
	MaxRequests int            `json:"max_requests"`
	MaxAge      time.Duration  `json:"max_age"`
	Processes   []WorkerStatus `json:"processes"`
}

// controlWait bounds a connection: the request's arrival, the loop's
// answer, and the reply's writing.
const controlWait = 5 * time.Second

// control is the master's listening control socket and the goroutines
// serving it.
type control struct {
	ln    *net.UnixListener
	conns sync.WaitGroup // the accept goroutine and every connection's
}

// openControl makes the control socket at path, mode 0600. A file there is
// removed only when it is a dead socket of this user; a live one (another
// master) or another user's file is an error.
func openControl(path string) (*net.UnixListener, error) {
	if err := checkControlPath(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("cluster: Config.Control %q: %w", path, err)
	}
	// Between bind and chmod the socket has the umask's mode; the peer's
	// uid is checked on every connection (where the system tells it), so
	// that window lets nobody else in.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cluster: Config.Control %q: %w", path, err)
	}
	return ln, nil
}

// checkControlPath removes a stale socket of this user at path, and refuses
// anything else there.
func checkControlPath(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: Config.Control %q: %w", path, err)
	}
	if uid, ok := fileUID(info); ok && uid != os.Getuid() {
		return fmt.Errorf("cluster: Config.Control %q is owned by uid %d, not this user (uid %d); refused: choose another path", path, uid, os.Getuid())
	}
	if info.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("cluster: Config.Control %q exists and is not a socket (%v); refused: remove it or choose another path", path, info.Mode().Type())
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("cluster: Config.Control %q: another master listens there; accepted: a path no live master uses", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cluster: Config.Control %q: removing a stale socket: %w", path, err)
	}
	return nil
}

// serveControl accepts on ln until closeControl.
func (c *Cluster) serveControl(m *master, ln *net.UnixListener) *control {
	ctl := &control{ln: ln}
	ctl.conns.Add(1)
	go func() {
		defer ctl.conns.Done()
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					m.log.Warn("control socket: accept failed; it answers no more", "err", err)
				}
				return
			}
			ctl.conns.Add(1)
			go func() {
				defer ctl.conns.Done()
				defer conn.Close()
				c.serveControlConn(m, conn)
			}()
		}
	}()
	return ctl
}

// close stops accepting, removes the socket's file, and waits for the
// connections, each bounded by controlWait.
func (ctl *control) close() {
	ctl.ln.Close() // a listener made by ListenUnix removes its file
	ctl.conns.Wait()
}

func (c *Cluster) serveControlConn(m *master, conn *net.UnixConn) {
	conn.SetDeadline(time.Now().Add(controlWait))
	enc := json.NewEncoder(conn)
	// The request is read before the peer is judged, even one refused:
	// a reply sent before the client finished writing would meet a
	// broken pipe rather than be read.
	var req ControlRequest
	line, err := bufio.NewReader(io.LimitReader(conn, maxControlRequest)).ReadBytes('\n')
	if err == nil || len(line) > 0 {
		err = json.Unmarshal(line, &req)
	}
	if uid, ok, perr := peerUID(conn); perr != nil || (ok && uid != os.Getuid()) {
		if perr == nil {
			perr = fmt.Errorf("peer uid %d is not this master's (uid %d)", uid, os.Getuid())
		}
		m.log.Warn("control socket: connection refused", "err", perr)
		enc.Encode(ControlReply{Error: "refused: " + perr.Error()})
		return
	}
	if err != nil {
		enc.Encode(ControlReply{Error: fmt.Sprintf("reading the request: %v; accepted: one JSON line such as {\"cmd\":\"status\"}", err)})
		return
	}
	enc.Encode(c.control(m, req))
}

// maxControlRequest bounds a request line; a real one is a few dozen bytes.
const maxControlRequest = 4096

// control carries out one request.
func (c *Cluster) control(m *master, req ControlRequest) ControlReply {
	ctx, cancel := context.WithTimeout(context.Background(), controlWait)
	defer cancel()
	switch req.Cmd {
	case "status":
		procs, err := m.askStatus(ctx)
		if err != nil {
			return ControlReply{Error: err.Error()}
		}
		cfg := c.cfg
		return ControlReply{Status: &ControlStatus{
			Pid: os.Getpid(), Workers: cfg.Workers, MaxMemory: cfg.MaxMemory, HardMemory: cfg.HardMemory,
			TotalMemory: cfg.TotalMemory, MaxRequests: cfg.MaxRequests, MaxAge: cfg.MaxAge, Processes: procs,
		}}
	case "reload":
		c.Reload()
	case "stop":
		c.Stop()
	case "recycle":
		if req.Worker == nil {
			return ControlReply{Error: fmt.Sprintf(`"recycle" needs "worker"; accepted: a slot from 0 to %d`, c.cfg.Workers-1)}
		}
		if err := c.recycle(ctx, m, *req.Worker); err != nil {
			return ControlReply{Error: err.Error()}
		}
	default:
		return ControlReply{Error: fmt.Sprintf("unknown cmd %q; accepted: status, reload, stop, recycle", req.Cmd)}
	}
	return ControlReply{}
}

// Control sends req to the control socket at path and returns the reply.
// An error is returned when the socket cannot be reached or answers
// nothing; a reply's own Error is the master's refusal.
func Control(ctx context.Context, path string, req ControlRequest) (ControlReply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return ControlReply{}, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return ControlReply{}, fmt.Errorf("control socket %s: sending: %w", path, err)
	}
	var reply ControlReply
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		return ControlReply{}, fmt.Errorf("control socket %s: reading the reply: %w", path, err)
	}
	return reply, nil
}
