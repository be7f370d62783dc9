package main

import "github.com/memdrain/memdrain/internal/loadgen"

// delays model a client far away without network emulation: the client's
// bytes leave late (see loadgen.Delays, which the tests' load generator
// uses too).
type delays = loadgen.Delays
