// Package logbuf collects log output for tests that read it while servers
// still write it.
package logbuf

import (
	"strings"
	"sync"
)

// A Buffer is an io.Writer safe for use from any goroutine.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
