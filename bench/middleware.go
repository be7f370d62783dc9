package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/middleware"
)

// Part 2: the middleware's cost. A bare handler against the same handler
// behind middleware.New, serial and in parallel on every core, with
// testing.Benchmark in this process (the same benchmarks as
// middleware/bench_test.go).

// middlewarePart is part 2's result, per request.
type middlewarePart struct {
	Part     string         `json:"part"`
	Procs    int            `json:"gomaxprocs"`
	Serial   middlewareCost `json:"serial"`
	Parallel middlewareCost `json:"parallel"`
	// Copy is the middleware when the request's context does not carry
	// the controller yet, so the middleware copies the request to add it.
	Copy benchFigure `json:"serial_context_copy"`
}

// middlewareCost compares the bare handler with the wrapped one.
type middlewareCost struct {
	Bare        benchFigure `json:"bare"`
	Middleware  benchFigure `json:"middleware"`
	AddedNs     float64     `json:"added_ns_per_op"`
	AddedAllocs int64       `json:"added_allocs_per_op"`
}

// benchFigure is one benchmark's result.
type benchFigure struct {
	NsPerOp     float64 `json:"ns_per_op"`
	AllocsPerOp int64   `json:"allocs_per_op"`
	BytesPerOp  int64   `json:"bytes_per_op"`
}

func figure(r testing.BenchmarkResult) benchFigure {
	return benchFigure{NsPerOp: float64(r.T.Nanoseconds()) / float64(max(r.N, 1)), AllocsPerOp: r.AllocsPerOp(), BytesPerOp: r.AllocedBytesPerOp()}
}

func cost(bare, wrapped benchFigure) middlewareCost {
	return middlewareCost{Bare: bare, Middleware: wrapped, AddedNs: wrapped.NsPerOp - bare.NsPerOp, AddedAllocs: wrapped.AllocsPerOp - bare.AllocsPerOp}
}

// nopWriter is a ResponseWriter that costs nothing, so the benchmarks
// measure the handlers rather than a recorder.
type nopWriter struct{ header http.Header }

func (w *nopWriter) Header() http.Header         { return w.header }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

func runMiddlewarePart(ctx context.Context, benchTime time.Duration, prog *progress) (*middlewarePart, error) {
	// testing.Benchmark runs each benchmark for -test.benchtime.
	testing.Init()
	if err := flag.CommandLine.Set("test.benchtime", benchTime.String()); err != nil {
		return nil, fmt.Errorf("setting the benchmark time: %w", err)
	}
	progCtx, stop := context.WithCancel(ctx)
	defer stop()
	go prog.run(progCtx, "middleware cost", 5*benchTime*2, nil)

	c, err := drain.New(drain.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	wrapped := middleware.New(c)(bare)
	withController := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		return r.WithContext(drain.NewContext(r.Context(), c))
	}
	serial := func(h http.Handler, r *http.Request) benchFigure {
		return figure(testing.Benchmark(func(b *testing.B) {
			w := &nopWriter{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		}))
	}
	parallel := func(h http.Handler, r *http.Request) benchFigure {
		return figure(testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &nopWriter{header: http.Header{}}
				for pb.Next() {
					h.ServeHTTP(w, r)
				}
			})
		}))
	}
	p := &middlewarePart{Part: "middleware", Procs: runtime.GOMAXPROCS(0)}
	steps := []func(){
		func() { p.Serial.Bare = serial(bare, withController()) },
		func() { p.Serial.Middleware = serial(wrapped, withController()) },
		func() { p.Parallel.Bare = parallel(bare, withController()) },
		func() { p.Parallel.Middleware = parallel(wrapped, withController()) },
		func() { p.Copy = serial(wrapped, httptest.NewRequest(http.MethodGet, "/", nil)) },
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		step()
	}
	p.Serial = cost(p.Serial.Bare, p.Serial.Middleware)
	p.Parallel = cost(p.Parallel.Bare, p.Parallel.Middleware)
	return p, nil
}

func (p *middlewarePart) print(w io.Writer) {
	fmt.Fprintf(w, "\n2. Middleware cost: a bare handler against the same handler behind middleware.New\n")
	t := &table{}
	t.row("", "bare", "with middleware", "added", "allocs added")
	row := func(name string, c middlewareCost) {
		t.row(name, fmt.Sprintf("%.1f ns", c.Bare.NsPerOp), fmt.Sprintf("%.1f ns", c.Middleware.NsPerOp),
			fmt.Sprintf("%+.1f ns", c.AddedNs), fmt.Sprint(c.AddedAllocs))
	}
	row("serial", p.Serial)
	row(fmt.Sprintf("parallel (%d cores)", p.Procs), p.Parallel)
	t.row("serial, controller not yet in the request's context", "", fmt.Sprintf("%.1f ns", p.Copy.NsPerOp), "", fmt.Sprintf("%d (allocs/op)", p.Copy.AllocsPerOp))
	t.write(w)
}
