package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{{0, 1 * time.Millisecond}, {0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}}
	for _, c := range cases {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("percentile of one = %v, want 7", got)
	}
}

func TestSummarizeSortsAndReportsMax(t *testing.T) {
	l := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond})
	if l.Count != 3 || l.P50Ms != 2 || l.MaxMs != 3 {
		t.Errorf("summarize = %+v, want count 3, p50 2 ms, max 3 ms", l)
	}
	if l := summarize(nil); l != (latencies{}) {
		t.Errorf("summarize(nil) = %+v, want zero", l)
	}
}

func TestBuckets(t *testing.T) {
	start := time.Unix(100, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	times := []time.Time{at(-1), at(0), at(99), at(100), at(250), at(299), at(300), at(1000)}
	got := buckets(times, start, 100*time.Millisecond, 3)
	want := []int{2, 1, 2}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("buckets = %v, want %v", got, want)
		}
	}
	if got := buckets(times, start, time.Second, 0); len(got) != 0 {
		t.Errorf("zero buckets = %v", got)
	}
}

func TestMedian(t *testing.T) {
	xs := []int{5, 1, 3, 2}
	if got := median(xs); got != 2 {
		t.Errorf("median(5,1,3,2) = %d, want 2 (the lower middle)", got)
	}
	if xs[0] != 5 {
		t.Error("median modified its input")
	}
	if got := median([]int{4, 9, 1}); got != 4 {
		t.Errorf("median(4,9,1) = %d, want 4", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median(nil) = %d", got)
	}
}

func TestNear(t *testing.T) {
	m := []time.Time{time.Unix(10, 0), time.Unix(20, 0)}
	for _, c := range []struct {
		t    time.Time
		want bool
	}{{time.Unix(9, 0), true}, {time.Unix(11, 0), true}, {time.Unix(15, 0), false}, {time.Unix(21, 1), false}} {
		if got := near(c.t, m, time.Second); got != c.want {
			t.Errorf("near(%v) = %v, want %v", c.t.Unix(), got, c.want)
		}
	}
}

func TestThroughputSeparatesTheBucketsNearARecycleFromTheRest(t *testing.T) {
	start := time.Unix(0, 0)
	counts := make([]int, int(warmup/bucketWidth)+40) // 4 s after the warm-up
	for i := range counts {
		counts[i] = 150
	}
	w := int(warmup / bucketWidth)
	counts[w+5] = 100  // 0.5 s in: far from the recycle at 3 s
	counts[w+30] = 120 // at the recycle
	recycle := start.Add(warmup + 3*time.Second)
	steady, around, away := throughput(counts, start, []time.Time{recycle})
	perSecond := float64(time.Second / bucketWidth)
	if steady != 150*perSecond || around != 120*perSecond || away != 100*perSecond {
		t.Errorf("steady, around, away = %v, %v, %v; want %v, %v, %v", steady, around, away, 150*perSecond, 120*perSecond, 100*perSecond)
	}
}
