package memory

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSizeAccepts(t *testing.T) {
	const (
		ki = 1 << 10
		mi = 1 << 20
		gi = 1 << 30
		ti = 1 << 40
	)
	tests := []struct {
		in   string
		want uint64
	}{
		// Plain bytes.
		{"0", 0},
		{"1", 1},
		{"512", 512},
		{"000400", 400},
		{"18446744073709551615", math.MaxUint64},
		{"00000000000000000000000018446744073709551615", math.MaxUint64},
		{"512B", 512},
		{"512b", 512},

		// Powers of 1000, Kubernetes spelling.
		{"512k", 512e3},
		{"512K", 512e3},
		{"400M", 400e6},
		{"2G", 2e9},
		{"1T", 1e12},

		// Powers of 1024, Kubernetes spelling.
		{"1Ki", ki},
		{"400Mi", 400 * mi},
		{"1.5Gi", 3 * gi / 2},
		{"1Ti", ti},
		{"16777215Ti", 16777215 * ti},

		// B-suffixed spellings, any case.
		{"1KB", 1e3},
		{"1kB", 1e3},
		{"1kb", 1e3},
		{"1MB", 1e6},
		{"1mb", 1e6},
		{"1Mb", 1e6},
		{"1GB", 1e9},
		{"1TB", 1e12},
		{"1KiB", ki},
		{"1MiB", mi},
		{"1mib", mi},
		{"1GiB", gi},
		{"1TiB", ti},

		// Fractions, rounded up to whole bytes.
		{"1.5", 2},
		{"0.1", 1},
		{"0.5k", 500},
		{".5Gi", gi / 2},
		{"1.Gi", gi},
		{"1.000Mi", mi},
		{"0.001Ki", 2},           // 1.024 bytes
		{"97.7KiB", 100045},      // 100044.8
		{"1.1Ti", 1209462790554}, // 1209462790553.6
		{"0." + strings.Repeat("0", 60) + "1Ti", 1},
		{"1." + strings.Repeat("0", 60) + "1", 2},
		{"18446744073709551614.5", math.MaxUint64},

		// White space.
		{"  400Mi\n", 400 * mi},
		{"400 MiB", 400 * mi},
		{"400\tMi", 400 * mi},
		{" 1.5 GiB ", 3 * gi / 2},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseSizeRejects(t *testing.T) {
	tests := []struct {
		in  string
		why string // a fragment of the error that says what is wrong
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"-1", "negative"},
		{"-400Mi", "negative"},
		{"+400Mi", "no sign"},
		{"NaN", "not a finite number"},
		{"Inf", "not a finite number"},
		{"infinity", "not a finite number"},
		{"Mi", "no number"},
		{".", "no digits"},
		{".Mi", "no digits"},
		{"1.2.3", "more than one decimal point"},
		{"1..5Gi", "more than one decimal point"},
		{"1e9", "exponent"},
		{"1E9", "exponent"},
		{"1.5e+3", "exponent"},
		{"400Q", `unknown unit "Q"`},
		{"400 MiBs", `unknown unit "MiBs"`},
		{"1P", `unknown unit "P"`},
		{"1E", `unknown unit "E"`},
		{"0x10", `unknown unit "x10"`},
		{"1,5Gi", `unknown unit ",5Gi"`},
		{"1_000", `unknown unit "_000"`},
		{"400 M i", `unknown unit "M i"`},
		{"5-3", "unexpected sign"},
		{"400m", `means milli`},
		{"400g", `did you mean "G"`},
		{"400mi", `did you mean "Mi"`},
		{"400KI", `did you mean "Ki"`},
		{"18446744073709551616", "more than the largest size"},
		{"99999999999999999999999999", "more than the largest size"},
		{"16777216Ti", "more than the largest size"},
		{"18446744073709551615.1", "more than the largest size"},
		{"20000000T", "more than the largest size"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			require.Error(t, err)
			assert.Zero(t, got)
			msg := err.Error()
			assert.Contains(t, msg, "size "+strconv.Quote(tt.in)+":", "the error quotes the input")
			assert.Contains(t, msg, tt.why)
			assert.Contains(t, msg, "accepted: a number of bytes, or a number followed by k, M, G, T (powers of 1000), Ki, Mi, Gi, Ti (powers of 1024), or KB, MB, GB, TB, KiB, MiB, GiB, TiB")
		})
	}
}

func TestParseSizeMilliHint(t *testing.T) {
	_, err := ParseSize("400m")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `write "M" (10^6) or "Mi" (2^20)`)
}

func TestParseMemoryLimit(t *testing.T) {
	for _, in := range []string{"", "  ", "0", "0Mi", "0.0"} {
		got, err := ParseMemoryLimit(in)
		require.NoError(t, err, "%q means no limit", in)
		assert.Zero(t, got, "%q means no limit", in)
	}

	got, err := ParseMemoryLimit("400Mi")
	require.NoError(t, err)
	assert.Equal(t, uint64(400<<20), got)

	got, err = ParseMemoryLimit("1Mi")
	require.NoError(t, err, "the minimum itself is accepted")
	assert.Equal(t, uint64(1<<20), got)

	_, err = ParseMemoryLimit("400")
	require.EqualError(t, err, `memory limit "400" is 400 bytes, under the 1 MiB minimum; did you mean "400Mi"?`)

	_, err = ParseMemoryLimit("1048575")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `did you mean "1048575Mi"?`)

	_, err = ParseMemoryLimit("512Ki")
	require.EqualError(t, err, `memory limit "512Ki" is 524288 bytes (512KiB), under the 1 MiB minimum`)

	_, err = ParseMemoryLimit("400Q")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `memory limit: size "400Q": unknown unit "Q"`)
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   uint64
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{512, "512B"},
		{1023, "1023B"},
		{1024, "1KiB"},
		{1536, "1.5KiB"},
		{100000, "97.7KiB"},
		{1048524, "1023.9KiB"},
		{1048575, "1MiB"}, // 1023.999KiB rounds into the next unit
		{150 << 20, "150MiB"},
		{3 << 29, "1.5GiB"},
		{1 << 40, "1TiB"},
		{1 << 50, "1024TiB"},
		{math.MaxUint64, "16777215.9TiB"}, // 16777216TiB would not parse
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, FormatSize(tt.in), "FormatSize(%d)", tt.in)
	}
}

func TestFormatSizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(x uint64) {
		s := FormatSize(x)
		got, err := ParseSize(s)
		require.NoError(t, err, "FormatSize(%d) = %q", x, s)
		assert.InEpsilon(t, float64(x)+1, float64(got)+1, 0.05, "FormatSize(%d) = %q parses to %d", x, s, got)
	}
	for _, x := range []uint64{0, 1, 1023, 1024, 1075, 1 << 40, math.MaxUint64, math.MaxUint64 - 1<<36} {
		check(x)
	}
	for range 10000 {
		check(r.Uint64() >> r.UintN(64)) // every magnitude, not just huge ones
	}
}

// FuzzParseSize checks the properties that must hold for any input: no
// panic; an error quotes the input; a result formats to a string that parses
// back close to it; and a plain decimal integer parses to itself.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{
		"400Mi", "1.5Gi", "512k", "1e9", "400m", "18446744073709551615",
		"18446744073709551616", " 400 MiB ", "-1", "NaN", "1..5", ".5", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error %q does not quote the input %q", err, s)
			}
			if v != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, v, err)
			}
		} else {
			formatted := FormatSize(v)
			back, err := ParseSize(formatted)
			if err != nil {
				t.Fatalf("ParseSize(%q) = %d, but FormatSize gives %q, which does not parse: %v", s, v, formatted, err)
			}
			if d := math.Abs(float64(back) - float64(v)); d > 0.05*float64(v) {
				t.Fatalf("ParseSize(%q) = %d, FormatSize gives %q, which parses to %d", s, v, formatted, back)
			}
		}
		if n, perr := strconv.ParseUint(s, 10, 64); perr == nil && (err != nil || v != n) {
			t.Fatalf("ParseSize(%q) = %d, %v; want %d", s, v, err, n)
		}
	})
}
