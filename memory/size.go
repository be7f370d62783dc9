package memory

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// acceptedSizes ends every ParseSize error, so whoever mistyped a size in an
// environment variable learns the whole grammar from the one message.
const acceptedSizes = "accepted: a number of bytes, or a number followed by " +
	"k, M, G, T (powers of 1000), Ki, Mi, Gi, Ti (powers of 1024), " +
	"or KB, MB, GB, TB, KiB, MiB, GiB, TiB"

// ParseSize parses a size in bytes written the way Kubernetes writes resource
// quantities, plus the common byte spellings:
//
//   - a plain number is bytes: "1048576";
//   - k (or K), M, G, T multiply by powers of 1000: "400M", "512k";
//   - Ki, Mi, Gi, Ti multiply by powers of 1024: "400Mi", "1.5Gi";
//   - KB, MB, GB, TB are powers of 1000 and KiB, MiB, GiB, TiB powers of
//     1024; these B-suffixed forms, and a bare B, are accepted in any case
//     ("mb", "Mib").
//
// The one-letter and Ki-style units are case-sensitive, as in Kubernetes,
// where "m" means milli: "400m" is rejected with a hint to write "400M" or
// "400Mi". The number may have a fraction ("1.5Gi"); the result is rounded up
// to a whole byte. Surrounding white space is ignored and white space may
// separate the number from its unit ("400 MiB").
//
// ParseSize computes exactly, without floating point, so every integer that
// fits in a uint64 parses to itself. Signs, exponents ("1e9"), NaN and
// infinities, more than one decimal point, unknown units and sizes beyond the
// range of a uint64 are rejected with an error that quotes the input and
// lists the accepted forms. ParseSize never panics.
func ParseSize(s string) (uint64, error) {
	fail := func(format string, args ...any) (uint64, error) {
		return 0, fmt.Errorf("size %q: %s; %s", s, fmt.Sprintf(format, args...), acceptedSizes)
	}
	t := strings.TrimSpace(s)
	num := t[:len(t)-len(strings.TrimLeft(t, "0123456789."))]
	unit := strings.TrimSpace(t[len(num):])
	switch lower := strings.ToLower(t); {
	case t == "":
		return fail("empty")
	case strings.Trim(num, ".") == "" && t[0] == '-':
		return fail("negative")
	case strings.Trim(num, ".") == "" && t[0] == '+':
		return fail("a size has no sign")
	case lower == "nan" || lower == "inf" || lower == "infinity":
		return fail("not a finite number")
	case num == "":
		return fail("no number")
	case strings.Trim(num, ".") == "":
		return fail("no digits in number %q", num)
	case strings.Count(num, ".") > 1:
		return fail("more than one decimal point in %q", num)
	case len(unit) > 1 && (unit[0] == 'e' || unit[0] == 'E') && strings.ContainsAny(unit[1:2], "0123456789+-"):
		return fail("exponent notation is not accepted; write the unit instead, e.g. \"1G\" for 1e9")
	}
	base, power, ok := parseUnit(unit)
	switch {
	case ok:
	case unit == "m":
		return fail("unit %q means milli (1/1000) in Kubernetes; write \"M\" (10^6) or \"Mi\" (2^20)", unit)
	case unit[0] == '-' || unit[0] == '+':
		return fail("unexpected sign in %q", unit)
	case len(unit) <= 2 && strings.Contains("kmgt", strings.ToLower(unit[:1])) && (len(unit) == 1 || strings.ToLower(unit[1:]) == "i"):
		// A bare unit in the wrong case: "g", "mi", "KI".
		hint := strings.ToUpper(unit[:1]) + strings.ToLower(unit[1:])
		return fail("unknown unit %q (units are case-sensitive, as in Kubernetes: did you mean %q?)", unit, hint)
	default:
		return fail("unknown unit %q", unit)
	}
	v, ok := scale(num, base, power)
	if !ok {
		return fail("more than the largest size, %d bytes", uint64(math.MaxUint64))
	}
	return v, nil
}

// parseUnit returns a unit's multiplier as base^power. The Kubernetes
// suffixes (k, M, G, T, Ki, Mi, Gi, Ti) are case-sensitive, because there
// the case carries meaning: "m" is milli, not mega; "K" is accepted beside
// "k" because nothing else could be meant by it. The spellings ending in B
// are accepted in any case: a trailing B can only mean bytes, so "mb" is an
// unambiguous typo for MB.
func parseUnit(unit string) (base uint64, power int, ok bool) {
	p, isBytes := strings.CutSuffix(strings.ToLower(unit), "b")
	bare := unit == "" || unit == "k" || (len(unit) <= 2 && strings.Contains("KMGT", unit[:1]) && (len(unit) == 1 || unit[1:] == "i"))
	if !isBytes && !bare {
		return 0, 0, false
	}
	base = 1000
	if q, ok := strings.CutSuffix(p, "i"); ok && len(q) == 1 {
		base, p = 1024, q
	}
	if p == "" {
		return base, 0, true
	}
	i := strings.Index("kmgt", p)
	return base, i + 1, len(p) == 1 && i >= 0
}

// scale returns num × base^power, rounded up to a whole byte, and false if
// that does not fit in a uint64. It is exact at any length of fraction: each
// multiplication by base moves the whole part of fraction × base, computed
// digit by digit, into the result, and any fraction left rounds up.
func scale(num string, base uint64, power int) (uint64, bool) {
	whole, frac, _ := strings.Cut(num, ".")
	v, err := strconv.ParseUint("0"+whole, 10, 64)
	if err != nil {
		return 0, false
	}
	digits := bytes.TrimRight([]byte(frac), "0")
	for range power {
		hi, lo := bits.Mul64(v, base)
		var carry, overflow uint64
		for i := len(digits) - 1; i >= 0; i-- {
			d := uint64(digits[i]-'0')*base + carry
			digits[i], carry = byte(d%10)+'0', d/10
		}
		if v, overflow = bits.Add64(lo, carry, 0); hi != 0 || overflow != 0 {
			return 0, false
		}
		digits = bytes.TrimRight(digits, "0")
	}
	if len(digits) > 0 {
		if v == math.MaxUint64 {
			return 0, false
		}
		v++
	}
	return v, true
}

// binaryUnits are FormatSize's units. They stop at TiB because ParseSize
// stops there, and FormatSize's output must parse.
var binaryUnits = []struct {
	name string
	size uint64
}{
	{"KiB", 1 << 10},
	{"MiB", 1 << 20},
	{"GiB", 1 << 30},
	{"TiB", 1 << 40},
}

// FormatSize formats a size in bytes for people, in the largest binary unit
// that keeps the number at least 1, with at most one decimal and without a
// trailing ".0": "512B", "97.7KiB", "150MiB", "1.5GiB". The largest unit is
// TiB.
//
// ParseSize accepts every string FormatSize returns and gives back b to
// within 5%.
func FormatSize(b uint64) string {
	if b < 1<<10 {
		return strconv.FormatUint(b, 10) + "B"
	}
	i := 0
	for i+1 < len(binaryUnits) && b >= binaryUnits[i+1].size {
		i++
	}
	tenths := roundTenths(b, binaryUnits[i].size)
	// 1023.96KiB rounds to 1024.0KiB: say 1MiB instead.
	if tenths >= 10240 && i+1 < len(binaryUnits) {
		i++
		tenths = roundTenths(b, binaryUnits[i].size)
	}
	if !tenthsFit(tenths, binaryUnits[i].size) {
		// Rounding up went past the largest uint64 (only within 0.05TiB
		// of it); round down instead so the output still parses.
		tenths--
	}
	s := strconv.FormatUint(tenths/10, 10)
	if d := tenths % 10; d != 0 {
		s += "." + strconv.FormatUint(d, 10)
	}
	return s + binaryUnits[i].name
}

// roundTenths returns b/unit in tenths, rounded half up. unit ≥ 1024, so the
// high word of b×10 (below 10) is below unit and Div64 cannot panic.
func roundTenths(b, unit uint64) uint64 {
	hi, lo := bits.Mul64(b, 10)
	q, r := bits.Div64(hi, lo, unit)
	if r >= unit-r {
		q++
	}
	return q
}

// tenthsFit reports whether ceil(tenths × unit / 10), what ParseSize makes of
// FormatSize's output, fits in a uint64.
func tenthsFit(tenths, unit uint64) bool {
	hi, lo := bits.Mul64(tenths, unit)
	_, carry := bits.Add64(lo, 9, 0)
	return hi+carry < 10
}

// minMemoryLimit is the smallest memory limit ParseMemoryLimit accepts. No Go
// server runs in less, so a smaller value is a missing unit, not a choice.
const minMemoryLimit = 1 << 20

// ParseMemoryLimit parses a memory limit with ParseSize. An empty string, or
// any size that parses to zero, means "no limit" and returns 0 and a nil
// error, because a limit usually comes from an environment variable that may
// be set but empty.
//
// A limit below 1 MiB is an error: a plain number is bytes, and "400" almost
// always meant 400 MiB, so the error suggests the likely spelling:
//
//	memory limit "400" is 400 bytes, under the 1 MiB minimum; did you mean "400Mi"?
func ParseMemoryLimit(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	v, err := ParseSize(t)
	if err != nil {
		return 0, fmt.Errorf("memory limit: %w", err)
	}
	if v == 0 || v >= minMemoryLimit {
		return v, nil
	}
	if strings.Trim(t, "0123456789.") == "" {
		return 0, fmt.Errorf("memory limit %q is %d bytes, under the 1 MiB minimum; did you mean %q?", s, v, t+"Mi")
	}
	return 0, fmt.Errorf("memory limit %q is %d bytes (%s), under the 1 MiB minimum", s, v, FormatSize(v))
}
