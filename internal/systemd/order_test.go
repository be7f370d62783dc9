//go:build linux || darwin

package systemd

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// passed returns listeners on fresh ports of 127.0.0.1, named as systemd
// would name them from FileDescriptorName=.
func passed(t *testing.T, names ...string) []Socket {
	t.Helper()
	var sockets []Socket
	for _, name := range names {
		sockets = append(sockets, Socket{Name: name, Listener: freeListener(t)})
	}
	return sockets
}

func TestPassedSocketsFollowListenByNameThenAddressThenOrder(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sockets := passed(t, "", "admin", "")
	public, admin, other := sockets[0].Listener, sockets[1].Listener, sockets[2].Listener

	got, err := orderSockets(nil, "Listen", sockets, quiet)
	require.NoError(t, err)
	assert.Equal(t, []net.Listener{public, admin, other}, got, "Listen not given: in the order passed")

	got, err = orderSockets([]string{"unix:/run/elsewhere.sock", "admin", public.Addr().String()}, "Listen", sockets, quiet)
	require.NoError(t, err)
	assert.Equal(t, []net.Listener{other, admin, public}, got, "by name, by address, then what is left")

	_, err = orderSockets([]string{"admin"}, "Listen", sockets, quiet)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "names 1 addresses but systemd passed 3 sockets")
	assert.Contains(t, err.Error(), `named "admin"`)
}

func TestBoundToMatchesListenAddresses(t *testing.T) {
	ln := freeListener(t)
	port := ln.Addr().(*net.TCPAddr).Port
	assert.True(t, boundTo(ln.Addr(), ln.Addr().String()))
	assert.False(t, boundTo(ln.Addr(), net.JoinHostPort("127.0.0.2", strconv.Itoa(port))))
	assert.False(t, boundTo(ln.Addr(), ":"+strconv.Itoa(port)), "127.0.0.1 is not every address")
	assert.False(t, boundTo(ln.Addr(), "unix:/run/x.sock"))
	assert.True(t, boundTo(&net.TCPAddr{IP: net.IPv6zero, Port: 80}, ":80"))
	assert.True(t, boundTo(&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "unix:/run/x.sock"))
}

func freeListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}
