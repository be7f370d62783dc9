//go:build linux || darwin

package cluster

import (
	"os"
	"os/exec"
	"testing"

	"github.com/memdrain/memdrain/memory"
)

// BenchmarkSample measures what the master pays to sample one worker's
// memory, against the cheapest possible read of the same figure (a raw
// read of /proc/self/statm) in the same run. Multiplied by the samples per
// second it gives the cost of supervision: 64 workers sampled once a second
// is 64 samples a second.
//
//	go test -run '^$' -bench Sample -count 6 ./cluster
func BenchmarkSample(b *testing.B) {
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		b.Skip("no sleep(1) to sample:", err)
	}
	defer func() {
		child.Process.Kill()
		child.Wait()
	}()
	pid := child.Process.Pid
	b.Run("baseline-read-statm", func(b *testing.B) {
		if _, err := os.Stat("/proc/self/statm"); err != nil {
			b.Skip("needs /proc")
		}
		buf := make([]byte, 128)
		for b.Loop() {
			f, err := os.Open("/proc/self/statm")
			if err != nil {
				b.Fatal(err)
			}
			f.Read(buf)
			f.Close()
		}
	})
	for name, sampler := range map[string]memory.Sampler{"rss": memory.RSS, "anon": memory.Anon} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sampler.Sample(pid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
