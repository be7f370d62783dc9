package memory

import (
	"bufio"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var builtinSamplers = map[string]Sampler{"RSS": RSS, "Anon": Anon, "GoRuntime": GoRuntime}

func TestSamplersSampleSelf(t *testing.T) {
	for name, s := range builtinSamplers {
		v, err := s.Sample(os.Getpid())
		require.NoError(t, err, name)
		assert.Positive(t, v, name)
	}
	v, err := GoRuntime.Sample(0)
	require.NoError(t, err, "0 means this process")
	assert.Positive(t, v)
}

func TestAnonExcludesSharedPages(t *testing.T) {
	anon, err := Anon.Sample(os.Getpid())
	require.NoError(t, err)
	rss, err := RSS.Sample(os.Getpid())
	require.NoError(t, err)
	if runtime.GOOS == "linux" {
		// The test binary's own code is resident and file-backed: RSS
		// counts it, Anon does not. It is megabytes, far more than the
		// heap can shrink between the two samples.
		assert.Less(t, anon, rss)
	} else {
		assert.LessOrEqual(t, anon, rss)
	}
}

// Writing to 64 MiB of fresh memory makes it resident, and the Go runtime
// must have mapped it: both figures grow by about that much.
func TestSamplersSeeAllocation(t *testing.T) {
	const size = 64 << 20
	// Return free memory to the OS first, so the allocation cannot be served
	// from pages that are already resident and counted.
	debug.FreeOSMemory()
	rssBefore, err := RSS.Sample(os.Getpid())
	require.NoError(t, err)
	goBefore, err := GoRuntime.Sample(0)
	require.NoError(t, err)

	buf := make([]byte, size)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}

	rssAfter, err := RSS.Sample(os.Getpid())
	require.NoError(t, err)
	goAfter, err := GoRuntime.Sample(0)
	require.NoError(t, err)
	runtime.KeepAlive(buf)

	const want = 48 << 20 // of 64: room for the runtime's own churn
	assert.GreaterOrEqual(t, int64(rssAfter)-int64(rssBefore), int64(want), "RSS %s -> %s", FormatSize(rssBefore), FormatSize(rssAfter))
	assert.GreaterOrEqual(t, int64(goAfter)-int64(goBefore), int64(want), "GoRuntime %s -> %s", FormatSize(goBefore), FormatSize(goAfter))
}

func TestSamplersRejectGoneProcess(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) to start and reap")
	}
	cmd := exec.Command(truePath)
	require.NoError(t, cmd.Run())
	pid := cmd.ProcessState.Pid() // reaped by Run: no such process any more

	for name, s := range builtinSamplers {
		assert.NotPanics(t, func() {
			v, err := s.Sample(pid)
			assert.Error(t, err, name)
			assert.Zero(t, v, name)
		}, name)
	}
}

func TestSamplersRejectBadPids(t *testing.T) {
	pids := []int{-1, math.MinInt, math.MaxInt}
	if beyond := int64(math.MaxInt32) + 1; int64(int(beyond)) == beyond {
		pids = append(pids, int(beyond)) // a pid no kernel hands out, where int has room for it
	}
	for name, s := range builtinSamplers {
		for _, pid := range pids {
			assert.NotPanics(t, func() {
				_, err := s.Sample(pid)
				assert.Error(t, err, "%s.Sample(%d)", name, pid)
			})
		}
	}
	for _, s := range []Sampler{RSS, Anon} {
		_, err := s.Sample(0)
		assert.Error(t, err, "0 is no process for RSS and Anon")
	}
}

func TestSamplersSampleChild(t *testing.T) {
	shPath, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh(1) to start")
	}
	// The child says "ready" once it has started and then blocks reading
	// its stdin, which nobody writes: from then on its memory holds still,
	// so samples taken one after the other can be compared. (Right after
	// Start it is still being loaded, and grows between two samples.)
	cmd := exec.Command(shPath, "-c", "echo ready; read line")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", ready)

	pid := cmd.Process.Pid
	anon, err := Anon.Sample(pid)
	require.NoError(t, err)
	rss, err := RSS.Sample(pid)
	require.NoError(t, err)
	assert.Positive(t, rss)
	assert.Positive(t, anon, "a shell writes to its own stack and heap")
	assert.LessOrEqual(t, anon, rss)

	_, err = GoRuntime.Sample(pid)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "only its own process")
}

func TestGoRuntimeConcurrentAndAllocationFree(t *testing.T) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, err := GoRuntime.Sample(0)
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()

	allocs := testing.AllocsPerRun(100, func() {
		_, _ = GoRuntime.Sample(0)
	})
	assert.Zero(t, allocs)
}

func TestSamplerByName(t *testing.T) {
	for name, want := range map[string]Sampler{
		"rss": RSS, "RSS": RSS, " Rss\n": RSS, "": RSS,
		"anon": Anon, "Anon": Anon,
		"go": GoRuntime, "Go": GoRuntime,
	} {
		got, err := SamplerByName(name)
		require.NoError(t, err, name)
		assert.Equal(t, want, got, name)
	}

	for _, name := range []string{"vms", "golang", "rss,anon", "\x00"} {
		got, err := SamplerByName(name)
		require.Error(t, err, name)
		assert.Nil(t, got)
		assert.Contains(t, err.Error(), "accepted: rss")
		assert.Contains(t, err.Error(), "anon")
		assert.Contains(t, err.Error(), "go (")
	}

	_, err := SamplerByName("uss")
	require.Error(t, err, "the old name is refused, not aliased")
	assert.Contains(t, err.Error(), `renamed "anon"`)
}

func TestParseStatm(t *testing.T) {
	rss, shared, err := parseStatm("765 441 412 5 0 123 0\n")
	require.NoError(t, err)
	assert.Equal(t, uint64(441), rss)
	assert.Equal(t, uint64(412), shared)

	for _, bad := range []string{"", "1 2", "1 x 3", "1 2 -3", "\x00"} {
		_, _, err := parseStatm(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestSamplerFunc(t *testing.T) {
	var got int
	s := SamplerFunc(func(pid int) (uint64, error) {
		got = pid
		return 42, nil
	})
	v, err := s.Sample(7)
	require.NoError(t, err)
	assert.Equal(t, uint64(42), v)
	assert.Equal(t, 7, got)
}
