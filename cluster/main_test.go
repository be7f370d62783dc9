//go:build linux || darwin

package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memdrain/memdrain/drain"
	"github.com/memdrain/memdrain/internal/leaky"
	"go.uber.org/goleak"
)

// The test binary is its own worker: the master re-executes it, and
// TestMain sends the re-executed process to testWorker instead of the
// tests. TEST_WORKER picks a behaviour, so each test can make its workers
// misbehave in a particular way. TEST_MASTER runs a whole master instead,
// for the tests that must kill one.
func TestMain(m *testing.M) {
	switch {
	case IsWorker():
		os.Exit(testWorker(os.Getenv("TEST_WORKER")))
	case os.Getenv("TEST_MASTER") != "":
		os.Exit(testMaster())
	}
	goleak.VerifyTestMain(m)
}

// Worker behaviours.
const (
	behaveNormally        = ""
	crashAtOnce           = "crash"         // exit 3 before serving
	ignoreDrain           = "ignore-drain"  // ready, then never drain
	firstOnlyGetsReady    = "first-ready"   // only the first worker of a slot gets ready
	bornOverLimit         = "born-fat"      // retain 64 MiB before serving
	heldSecondOfSlot0     = "held-second"   // slot 0's second worker waits for TEST_GATE to open
	asksBeforeReady       = "asks-early"    // the first worker of a slot asks to be recycled before it is ready
	asksWithBadReason     = "asks-bad"      // the first worker of a slot asks to be recycled with an invalid reason
	unhealthyOnMarker     = "unhealthy"     // Config.Health fails once the test created unhealthyMarker(pid)
	heldDrainOfSlot0      = "held-drain"    // slot 0's first worker asks to be recycled, and its drain waits for DrainTimeout
	leaksFast             = "leaks-fast"    // leaks fastLeakMiB every fastLeakEvery from the moment it is ready
	growsWhileDraining    = "grows-drain"   // retains testWorkerRetainedMiB when its drain starts, then exits
	servesH2C             = "h2c"           // serves HTTP/1.1 and HTTP/2 without TLS (prior knowledge)
	servesTLS             = "tls"           // serves HTTPS with the certificate and key in TEST_TLS_CERT and TEST_TLS_KEY
	tlsCertOnlyFirst      = "tls-later"     // as servesTLS, but a slot's later workers have a TLSConfig without a certificate
	servesOwnServer       = "own-server"    // serves w.Listeners with an http.Server of its own, counting with w.Handler
	servesOwnUncounted    = "own-uncounted" // as servesOwnServer, without w.Handler: nothing counts its requests
	testTLSCert           = "TEST_TLS_CERT"
	testTLSKey            = "TEST_TLS_KEY"
	testGate              = "TEST_GATE"
	testControl           = "TEST_CONTROL"
	testWorkerMarkerDir   = "TEST_MARKER_DIR"
	testWorkerRetainedMiB = 64
	activatedMaster       = "activated" // TEST_MASTER: serve the sockets systemd passed
)

// A fast leak: 200 MiB/s, what the harness calls a fast leaker,
// stopped at fastLeakCapMiB so that a master that fails to recycle cannot
// take the machine's memory. Every test worker also starts it on SIGUSR1,
// so a test can make one chosen worker leak.
const (
	fastLeakMiB    = 1
	fastLeakEvery  = 5 * time.Millisecond
	fastLeakCapMiB = 320
)

var retainedAtStart []byte

// errPoolDeadlocked is what Config.Health of unhealthyOnMarker returns.
var errPoolDeadlocked = errors.New("connection pool deadlocked")

// unhealthyMarker names the file, in TEST_MARKER_DIR, that makes the
// worker pid unhealthy.
func unhealthyMarker(pid int) string { return "unhealthy-" + strconv.Itoa(pid) }

func testWorker(behaviour string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	leakOnSignal()
	cfg := Config{Logger: log}
	if behaviour == unhealthyOnMarker {
		marker := filepath.Join(os.Getenv(testWorkerMarkerDir), unhealthyMarker(os.Getpid()))
		cfg.Health = func(context.Context) error {
			if _, err := os.Stat(marker); err == nil {
				return errPoolDeadlocked
			}
			return nil
		}
	}
	err := Run(cfg, func(w *Worker) error {
		srv := &http.Server{Handler: testApp()}
		switch behaviour {
		case crashAtOnce:
			os.Exit(3)
		case ignoreDrain:
			w.Ready()
			select {} // never drains; the master must kill it
		case firstOnlyGetsReady:
			slotMarker := filepath.Join(os.Getenv(testWorkerMarkerDir), strconv.Itoa(w.ID))
			if err := os.Mkdir(slotMarker, 0o755); err != nil {
				<-w.Controller.Draining() // a later one: never ready
				return nil
			}
		case heldSecondOfSlot0:
			marker := filepath.Join(os.Getenv(testWorkerMarkerDir), strconv.Itoa(w.ID))
			if os.Mkdir(marker, 0o755) != nil && w.ID == 0 && os.Mkdir(marker+"-second", 0o755) == nil {
				gate, err := os.Open(os.Getenv(testGate)) // a FIFO: blocks until the test opens it for writing
				if err != nil {
					return err
				}
				gate.Close()
			}
		case asksBeforeReady:
			marker := filepath.Join(os.Getenv(testWorkerMarkerDir), strconv.Itoa(w.ID))
			if os.Mkdir(marker, 0o755) == nil {
				w.Recycle(drain.Manual)
			}
		case asksWithBadReason:
			marker := filepath.Join(os.Getenv(testWorkerMarkerDir), strconv.Itoa(w.ID))
			if os.Mkdir(marker, 0o755) == nil {
				w.Ready()
				w.Recycle(drain.Reason(200))
			}
		case bornOverLimit:
			retainedAtStart = touched(testWorkerRetainedMiB << 20)
		case heldDrainOfSlot0:
			marker := filepath.Join(os.Getenv(testWorkerMarkerDir), strconv.Itoa(w.ID))
			if w.ID == 0 && os.Mkdir(marker, 0o755) == nil {
				w.Controller.Acquire() // never released: the drain lasts until its deadline
				w.Recycle(drain.Manual)
			}
		case leaksFast:
			w.Ready()
			go leakFast()
		case growsWhileDraining:
			// A hook holds the drain while it runs: the memory is resident
			// before the worker exits, and after the master's last sample.
			w.Controller.OnDrain(func(drain.Reason) { retainedAtStart = touched(testWorkerRetainedMiB << 20) })
		case servesOwnServer:
			return serveOwn(w, w.Handler(srv.Handler))
		case servesOwnUncounted:
			return serveOwn(w, srv.Handler)
		case servesH2C:
			srv.Protocols = new(http.Protocols)
			srv.Protocols.SetHTTP1(true)
			srv.Protocols.SetUnencryptedHTTP2(true)
		case tlsCertOnlyFirst:
			if os.Mkdir(filepath.Join(os.Getenv(testWorkerMarkerDir), strconv.Itoa(w.ID)), 0o755) != nil {
				srv.TLSConfig = &tls.Config{} // a deploy that lost its certificate
				break
			}
			fallthrough
		case servesTLS:
			cert, err := tls.LoadX509KeyPair(os.Getenv(testTLSCert), os.Getenv(testTLSKey))
			if err != nil {
				return err
			}
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		}
		return w.Serve(srv)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "test worker:", err)
		return 1
	}
	return 0
}

// serveOwn serves h on w.Listeners with an http.Server of its own, as a
// program does that cannot hand its server to Worker.Serve: it reports
// ready by hand and shuts its server down when the drain starts.
func serveOwn(w *Worker, h http.Handler) error {
	own := &http.Server{Handler: h}
	errs := make(chan error, len(w.Listeners))
	for _, ln := range w.Listeners {
		go func() { errs <- own.Serve(ln) }()
	}
	w.Ready()
	<-w.Controller.Draining()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err := own.Shutdown(ctx)
	for range w.Listeners {
		if serr := <-errs; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	return err
}

// leakOnSignal starts a fast leak when the process receives SIGUSR1.
func leakOnSignal() {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		<-usr1
		leakFast()
	}()
}

var (
	leakedMu sync.Mutex
	leaked   [][]byte // kept for the life of the worker
)

// leakFast retains fastLeakMiB every fastLeakEvery, up to fastLeakCapMiB.
func leakFast() {
	tick := time.NewTicker(fastLeakEvery)
	defer tick.Stop()
	for range fastLeakCapMiB / fastLeakMiB {
		<-tick.C
		b := touched(fastLeakMiB << 20)
		leakedMu.Lock()
		leaked = append(leaked, b)
		leakedMu.Unlock()
	}
}

// touched returns n bytes, every page written so it is resident.
func touched(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return b
}

// testApp is the leaky app plus what the tests ask a worker about itself:
// its Go soft memory limit, and the inode of the binary it runs (which
// changes when a new binary is put in place).
func testApp() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", leaky.Handler())
	mux.HandleFunc("GET /memlimit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, debug.SetMemoryLimit(-1))
	})
	// POST /hold stays in flight until the client has sent its whole body:
	// a request that a test holds open as long as it likes. With "Expect:
	// 100-continue" the client learns when the handler runs.
	mux.HandleFunc("POST /hold", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "released")
	})
	// GET /env/NAME answers the worker's variable NAME, or 404 when unset.
	mux.HandleFunc("GET /env/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := os.LookupEnv(r.PathValue("name"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, v)
	})
	mux.HandleFunc("GET /binary", func(w http.ResponseWriter, r *http.Request) {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/self/exe", &st); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, st.Ino)
	})
	return mux
}

// testMaster runs a master of two workers on the address in TEST_MASTER
// (or, for "activated", on the sockets systemd passed, Listen unset), with
// its control socket at TEST_CONTROL if set, and prints "ready <pid>" for
// each worker that becomes ready, "draining <pid> <reason>" for each drain
// and "exited <pid>" for each planned exit. Its workers
// are itself: the binary at the path it was started from.
func testMaster() int {
	var listen []string
	if addr := os.Getenv("TEST_MASTER"); addr != activatedMaster {
		listen = []string{addr}
	}
	err := Run(Config{
		Listen:  listen,
		Workers: 2,
		Control: os.Getenv(testControl),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent: func(e Event) {
			switch e.Kind {
			case Ready:
				fmt.Printf("ready %d\n", e.Pid)
			case Draining:
				fmt.Printf("draining %d %s\n", e.Pid, e.Reason)
			case ExitedPlanned:
				fmt.Printf("exited %d\n", e.Pid)
			}
		},
	}, func(*Worker) error { return nil })
	if err != nil {
		fmt.Fprintln(os.Stderr, "test master:", err)
		return 1
	}
	return 0
}

// freeAddr returns a listener on a free port of 127.0.0.1.
func freeListener(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// noRaceExitSleep spares race-enabled workers the race detector's default
// one-second sleep before exit, which would otherwise lengthen every drain.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

// waitLimit bounds every wait on an event; a safety net, not a measurement.
const waitLimit = 60 * time.Second
