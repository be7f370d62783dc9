package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// progress prints what runs and the time left on stderr while a long part
// runs: rewritten in place on a terminal, a line every 10 s otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	quiet    bool
}

func newProgress(quiet bool) *progress {
	fi, err := os.Stderr.Stat()
	return &progress{w: os.Stderr, terminal: err == nil && fi.Mode()&os.ModeCharDevice != 0, quiet: quiet}
}

// run prints what and the time left until total has passed or ctx ends,
// adding detail() to each line. It returns when ctx ends; call it in a
// goroutine and cancel ctx to stop it.
func (p *progress) run(ctx context.Context, what string, total time.Duration, detail func() string) {
	if p.quiet {
		return
	}
	every := 10 * time.Second
	if p.terminal {
		every = 500 * time.Millisecond
	}
	start := time.Now()
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			if p.terminal {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case <-ticker.C:
		}
		left := max(total-time.Since(start), 0).Round(time.Second)
		line := fmt.Sprintf("%s: %v left", what, left)
		if detail != nil {
			line += ", " + detail()
		}
		if p.terminal {
			fmt.Fprintf(p.w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(p.w, line)
		}
	}
}

// note prints a line about what starts now.
func (p *progress) note(format string, args ...any) {
	if !p.quiet {
		fmt.Fprintf(p.w, format+"\n", args...)
	}
}
