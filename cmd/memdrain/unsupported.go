//go:build !linux

// Command memdrain runs any HTTP server as workers behind its proxy. It
// measures each worker's process tree through /proc, so it runs on Linux
// only.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "memdrain: not supported on %s; it runs on linux (it measures each worker's process tree through /proc)\n", runtime.GOOS)
	os.Exit(2)
}
