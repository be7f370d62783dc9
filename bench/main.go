// Command bench is memdrain's benchmark harness. It measures, against a
// baseline in the same run:
//
//  1. latency: how soon a drain returns after its last request ended
//     (drain.Serve against http.Server.Shutdown);
//  2. middleware: the cost the middleware adds to a request;
//  3. recycle: a cluster of leaking workers recycled under load (the
//     subject program in subject/, driven from here), with
//  4. the baseline in the same part: each worker shuts itself down with
//     http.Server.Shutdown over the limit and is respawned after it exited;
//  5. stress: the scenarios of issue 7 (a reload under 2,000 clients,
//     clients far away, HTTP/2, fast leaks, a bad deploy, shutdown, a hung
//     worker), one table row each; a gated scenario that misses its
//     target fails the run;
//  6. scale: the master's CPU and memory with 1 to 64 idle workers;
//  7. pm2: the same leaky Node app under `memdrain run` and under PM2 in
//     cluster mode with max_memory_restart, side by side, and the proxy's
//     own cost (the app alone against the app behind memdrain); the smoke
//     run runs memdrain only.
//
// Run it from bench/ (a module of its own, so that the plotting library
// stays out of memdrain's go.mod):
//
//	go run .                      # every part, tables on stdout
//	go run . -part recycle        # one part (or a comma-separated list)
//	go run . -json                # one JSON object per part
//	go run . -out results         # also write results/*.json and the plots
//	go run . -smoke               # a few seconds a part; fails if the harness
//	                              # breaks or memdrain loses a request
//
// All traffic goes to 127.0.0.1. Every process the harness starts is
// stopped by its pid when a part ends, fails, or on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// printer is a part's result: it prints itself as a table.
type printer interface{ print(io.Writer) }

func run(ctx context.Context, o *options, stdout io.Writer) error {
	prog := newProgress(false)
	tmp, err := os.MkdirTemp("", "memdrain-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
	}
	var problems []error
	for _, name := range o.parts {
		var result printer
		var err error
		switch name {
		case "latency":
			result, err = runLatencyPart(ctx, o.latency, prog)
		case "middleware":
			result, err = runMiddlewarePart(ctx, o.benchTime, prog)
		case "recycle":
			var p *recyclePart
			p, err = runRecyclePart(ctx, o.load, o.baseline, tmp, prog)
			if err == nil {
				result = p
				problems = append(problems, o.check(p)...)
				if o.out != "" {
					err = writePlots(o.out, p)
				}
			}
		case "stress":
			var p *stressPart
			p, err = runStressPart(ctx, o.stress, tmp, prog)
			if err == nil {
				result = p
				problems = append(problems, p.gateFailures()...)
			}
		case "scale":
			result, err = runScalePart(ctx, o.scale, tmp, prog)
		case "pm2":
			var p *pm2Part
			p, err = runPM2Part(ctx, o.pm2, tmp, prog)
			if err == nil {
				result = p
				problems = append(problems, p.problems()...)
			}
		}
		if err != nil {
			return fmt.Errorf("part %s: %w", name, err)
		}
		if o.json {
			line, err := json.Marshal(result)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", line)
		} else {
			result.print(stdout)
		}
		if o.out != "" {
			if err := writeJSON(filepath.Join(o.out, name+".json"), result); err != nil {
				return err
			}
		}
	}
	return errors.Join(problems...)
}

// check returns what, in the smoke run, fails it: memdrain losing a
// request, or a run that did not recycle (the harness did not exercise
// what it is for).
func (o *options) check(p *recyclePart) []error {
	var errs []error
	if p.Failed > 0 {
		errs = append(errs, fmt.Errorf("memdrain lost %d of %d requests while recycling: %s", p.Failed, p.Requests, failures(p.Failed, p.Failures)))
	}
	if o.smoke && p.Recycles == 0 {
		errs = append(errs, fmt.Errorf("memdrain recycled no worker in %.0f s: the load did not reach the %d-byte limit", p.Seconds, p.LimitBytes))
	}
	if p.Requests == 0 {
		errs = append(errs, errors.New("no request completed"))
	}
	return errs
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
