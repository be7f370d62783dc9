package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// sample returns the metric of family name whose labels include want, or
// nil.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		have := make(map[string]string)
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		matches := true
		for k, v := range want {
			matches = matches && have[k] == v
		}
		if matches {
			return m
		}
	}
	return nil
}

// value returns the counter's or gauge's value of sample, failing t when
// it is missing.
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	m := sample(families, name, want)
	if m == nil {
		t.Fatalf("no %s%v in the scrape", name, want)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, want)
	return 0
}

// histogram returns the histogram of family name, failing t when it is
// missing.
func histogram(t *testing.T, families map[string]*dto.MetricFamily, name string) *dto.Histogram {
	t.Helper()
	m := sample(families, name, nil)
	if m == nil || m.Histogram == nil {
		t.Fatalf("no histogram %s in the scrape", name)
	}
	return m.Histogram
}

// gather gathers reg into families by name.
func gather(t *testing.T, g interface {
	Gather() ([]*dto.MetricFamily, error)
}) map[string]*dto.MetricFamily {
	t.Helper()
	fs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]*dto.MetricFamily, len(fs))
	for _, f := range fs {
		byName[f.GetName()] = f
	}
	return byName
}
