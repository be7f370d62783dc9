//go:build linux || darwin

package connpass

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestAPassedConnectionReadsWhatWasBufferedFirst: the bytes the first
// server read, then the socket, in order; and passing it on again keeps the
// part of them not read yet.
func TestAPassedConnectionReadsWhatWasBufferedFirst(t *testing.T) {
	client, server := pair(t)
	f, rest, err := Detach(server, []byte("GE"))
	require.NoError(t, err)
	passed, err := FromFile(f, rest)
	require.NoError(t, err)
	defer passed.Close()
	_, err = io.WriteString(client, "T /")
	require.NoError(t, err)
	one := make([]byte, 1)
	_, err = io.ReadFull(passed, one)
	require.NoError(t, err)
	assert.Equal(t, "G", string(one))

	f, rest, err = Detach(passed, []byte("G"))
	require.NoError(t, err)
	again, err := FromFile(f, rest)
	require.NoError(t, err)
	defer again.Close()
	got := make([]byte, 5)
	_, err = io.ReadFull(again, got)
	require.NoError(t, err)
	assert.Equal(t, "GET /", string(got))
}

// TestInjectWakesABlockedAccept: no goroutine of the listener's own waits
// in the kernel's accept.
func TestInjectWakesABlockedAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := NewListener(ln, nil)
	require.NoError(t, err)
	defer l.Close()
	_, server := pair(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := l.Accept()
		if err == nil {
			accepted <- conn
		}
		close(accepted)
	}()
	require.NoError(t, l.Inject(server))
	select {
	case conn := <-accepted:
		assert.Same(t, server, conn)
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return the injected connection")
	}
	// The wrapped listener still accepts its own afterwards.
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
		}
	}()
	conn, err := l.Accept()
	require.NoError(t, err)
	conn.Close()
}

// TestCloseGivesQueuedConnectionsToOrphan: an injected connection nobody
// accepted is not dropped.
func TestCloseGivesQueuedConnectionsToOrphan(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var orphans []net.Conn
	l, err := NewListener(ln, func(c net.Conn) { orphans = append(orphans, c) })
	require.NoError(t, err)
	_, server := pair(t)
	require.NoError(t, l.Inject(server))
	require.NoError(t, l.Close())
	assert.Equal(t, []net.Conn{server}, orphans)
	assert.ErrorIs(t, l.Inject(server), ErrClosed)
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}
