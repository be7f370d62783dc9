//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/memdrain/memdrain/internal/proxy"
	"github.com/memdrain/memdrain/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// frontMetrics are what only the front sees: every request's status code
// and time, and the queue. The supervisor's metrics are metrics.Collector's.
type frontMetrics struct {
	requests   *prometheus.CounterVec // by code
	duration   prometheus.Histogram
	queueWaits *prometheus.HistogramVec // by outcome: forwarded or refused
}

// queueWaitBuckets span a worker becoming ready within milliseconds to the
// default queue timeout of 30 s.
var queueWaitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// requestBuckets are Prometheus' defaults, from 5 ms to 10 s, and then the
// default queue timeout (30 s) and a minute, for requests that waited.
var requestBuckets = append(append([]float64(nil), prometheus.DefBuckets...), 30, 60)

func newFrontMetrics() *frontMetrics {
	m := &frontMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "memdrain_http_requests_total",
			Help: "Requests answered by the front, by status code: the workers' answers, memdrain's own 502, 503 and 504, 101 for an Upgrade tunnel, 499 for an answer written (or none) after the client left or half-closed, and 500 when memdrain failed with nothing written.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "memdrain_http_request_duration_seconds",
			Help:    "Time from a request's arrival at the front to the end of its response, queue wait included; Upgrade tunnels are not timed.",
			Buckets: requestBuckets,
		}),
		queueWaits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "memdrain_queue_wait_seconds",
			Help:    "Time a request waited for a ready worker, in all, by outcome: forwarded to a worker, or refused (503, or its client went away).",
			Buckets: queueWaitBuckets,
		}, []string{"outcome"}),
	}
	m.queueWaits.WithLabelValues("forwarded")
	m.queueWaits.WithLabelValues("refused")
	return m
}

// queueWait is the proxy's OnQueueWait.
func (m *frontMetrics) queueWait(d time.Duration, forwarded bool) {
	outcome := "refused"
	if forwarded {
		outcome = "forwarded"
	}
	m.queueWaits.WithLabelValues(outcome).Observe(d.Seconds())
}

// instrument counts and times each request next serves, in a defer: a
// response the proxy aborts (panicking with http.ErrAbortHandler when the
// worker fails after its header) is counted too, under the code it began
// with. An answer written after the request's context ended is counted
// 499: net/http ends it when the connection's reading side closes, so the
// client had left (or half-closed) before it, and the proxy's 502 or 503
// then says nothing of the workers. A request that ends with nothing
// written is 499 the same way, and 500 if the handler panicked. A tunnel
// (101) is counted but not timed: its life is no request's latency.
func (m *frontMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, ctx: r.Context()}
		defer func() {
			failure := recover()
			code := sw.code
			switch {
			case sw.late || code == 0 && r.Context().Err() != nil:
				code = 499
			case code == 0 && failure != nil:
				code = http.StatusInternalServerError
			case code == 0:
				code = http.StatusOK // what net/http sends for a handler that wrote nothing
			}
			m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
			if code != http.StatusSwitchingProtocols {
				m.duration.Observe(time.Since(start).Seconds())
			}
			if failure != nil {
				panic(failure) // on to net/http, which closes the connection
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// A statusWriter records the final status code of a response, and whether
// it was written after the request's context ended. It adds no optional
// interface but Hijack: http.ResponseController (which the proxy uses to
// flush, to hijack and for full duplex) reaches the server's through
// Unwrap.
type statusWriter struct {
	http.ResponseWriter
	ctx  context.Context
	code int
	late bool
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 { // 1xx are informational, not the answer
		w.answered(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.answered(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) answered(code int) {
	w.code = code
	w.late = w.ctx.Err() != nil
}

// Hijack is how an Upgrade's 101 goes out: httputil.ReverseProxy writes it
// on the hijacked connection, never through WriteHeader.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.answered(http.StatusSwitchingProtocols)
	}
	return conn, brw, err
}

// serveMetrics serves, at /metrics on ln, the supervisor's metrics (sup),
// the front's (front, and p's queue), and the master's own process and Go
// runtime metrics. It returns the function that stops serving them.
func serveMetrics(ln net.Listener, sup *metrics.Collector, front *frontMetrics, p *proxy.Proxy, log *slog.Logger) (stop func()) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(sup, front.requests, front.duration, front.queueWaits, queueLength(p),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Registry: reg, // counts its own errors in promhttp_metric_handler_errors_total
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics: serving stopped", "err", err.Error())
		}
	}()
	return func() { srv.Close(); <-done }
}

// queueLength reports the proxy's queue at each scrape.
func queueLength(p *proxy.Proxy) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "memdrain_queue_length",
		Help: "Requests waiting for a ready worker.",
	}, func() float64 { return float64(p.QueueLen()) })
}
