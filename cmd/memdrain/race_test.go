//go:build linux && race

package main

// The memdrain binary under test is built with the race detector when the
// tests are.
func init() { buildFlags = append(buildFlags, "-race") }
