package main

import (
	"os"
	"testing"
)

func TestParseVmHWM(t *testing.T) {
	got, err := parseVmHWM("Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t  1536 kB\nVmRSS:\t 1000 kB\n")
	if err != nil || got != 1536<<10 {
		t.Errorf("parseVmHWM = %d, %v; want %d", got, err, 1536<<10)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t12 MB\n", "VmHWM:\tlots kB\n"} {
		if _, err := parseVmHWM(bad); err == nil {
			t.Errorf("parseVmHWM(%q) accepted it", bad)
		}
	}
}

func TestProcfsReadsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc here")
	}
	pid := os.Getpid()
	if n, err := rss(pid); err != nil || n == 0 {
		t.Errorf("rss = %d, %v", n, err)
	}
	if n, err := peakRSS(pid); err != nil || n == 0 {
		t.Errorf("peakRSS = %d, %v", n, err)
	}
	if _, err := cpuTime(pid); err != nil {
		t.Errorf("cpuTime: %v", err)
	}
	if _, err := statTime(pid); err != nil {
		t.Errorf("statTime: %v", err)
	}
}
