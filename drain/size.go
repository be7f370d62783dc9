package drain

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
)

// acceptedSizes ends every ParseSize error, so whoever mistyped a size in an
// environment variable learns the whole grammar from the one message.
const acceptedSizes = "accepted: a number of bytes, or a number followed by " +
	"k, M, G, T (powers of 1000), Ki, Mi, Gi, Ti (powers of 1024), " +
	"or KB, MB, GB, TB, KiB, MiB, GiB, TiB"

// bareUnits are the Kubernetes quantity suffixes. They are matched
// case-sensitively, as Kubernetes does, because there the case carries
// meaning: "m" is milli, not mega. "K" is not a Kubernetes suffix but is
// accepted as a synonym of "k" because nothing else could be meant by it.
var bareUnits = map[string]uint64{
	"":   1,
	"k":  1e3,
	"K":  1e3,
	"M":  1e6,
	"G":  1e9,
	"T":  1e12,
	"Ki": 1 << 10,
	"Mi": 1 << 20,
	"Gi": 1 << 30,
	"Ti": 1 << 40,
}

// byteUnits are the spellings ending in B. They are matched without regard to
// case: a trailing B can only mean bytes in a memory size, so "mb" and "Mb" are
// unambiguous typos for MB, and refusing them would only annoy.
var byteUnits = map[string]uint64{
	"b":   1,
	"kb":  1e3,
	"mb":  1e6,
	"gb":  1e9,
	"tb":  1e12,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// maxFractionDigits bounds the fraction kept for exact arithmetic. The
// largest multiplier is 2^40 < 10^13, so digits past the 40th move the result
// by far less than one byte; only whether any of them is non-zero matters,
// for rounding up. The bound keeps a pathological input from costing more
// than a few big.Int operations on small numbers.
const maxFractionDigits = 40

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
	if t == "" {
		return fail("empty")
	}

	// Split off the number: digits with at most one decimal point.
	end, dots, digits := 0, 0, 0
	for end < len(t) {
		c := t[end]
		if c == '.' {
			dots++
		} else if c >= '0' && c <= '9' {
			digits++
		} else {
			break
		}
		end++
	}
	num, unit := t[:end], strings.TrimSpace(t[end:])

	if digits == 0 {
		switch {
		case t[0] == '-':
			return fail("negative")
		case t[0] == '+':
			return fail("a size has no sign")
		case isNaNOrInf(t):
			return fail("not a finite number")
		case num == "":
			return fail("no number")
		default:
			return fail("no digits in number %q", num)
		}
	}
	if dots > 1 {
		return fail("more than one decimal point in %q", num)
	}
	if unit != "" && (unit[0] == 'e' || unit[0] == 'E') && len(unit) > 1 &&
		strings.ContainsAny(unit[1:2], "0123456789+-") {
		return fail("exponent notation is not accepted; write the unit instead, e.g. \"1G\" for 1e9")
	}

	mult, ok := unitMultiplier(unit)
	if !ok {
		switch {
		case unit == "m":
			// In Kubernetes "400m" is 0.4 bytes; nobody means that for memory.
			return fail("unit %q means milli (1/1000) in Kubernetes; write \"M\" (10^6) or \"Mi\" (2^20)", unit)
		case unit[0] == '-' || unit[0] == '+':
			return fail("unexpected sign in %q", unit)
		default:
			if hint := caseHint(unit); hint != "" {
				return fail("unknown unit %q (units are case-sensitive, as in Kubernetes: did you mean %q?)", unit, hint)
			}
			return fail("unknown unit %q", unit)
		}
	}

	v, ok := scale(num, mult)
	if !ok {
		return fail("more than the largest size, %d bytes", uint64(math.MaxUint64))
	}
	return v, nil
}

// unitMultiplier returns the number of bytes in one unit.
func unitMultiplier(unit string) (uint64, bool) {
	if m, ok := bareUnits[unit]; ok {
		return m, true
	}
	if len(unit) > 0 && (unit[len(unit)-1] == 'b' || unit[len(unit)-1] == 'B') {
		m, ok := byteUnits[strings.ToLower(unit)]
		return m, ok
	}
	return 0, false
}

// caseHint returns the bare unit that unit would be if it were spelled with
// the right case, or "" if there is none.
func caseHint(unit string) string {
	for u := range bareUnits {
		if u != "" && u != "K" && strings.EqualFold(u, unit) {
			return u
		}
	}
	return ""
}

func isNaNOrInf(s string) bool {
	switch strings.ToLower(s) {
	case "nan", "inf", "infinity":
		return true
	}
	return false
}

// scale returns ceil(num × mult), where num is a non-negative decimal with at
// most one point and at least one digit. It reports false if the result does
// not fit in a uint64.
func scale(num string, mult uint64) (uint64, bool) {
	intPart, frac, _ := strings.Cut(num, ".")
	intPart = strings.TrimLeft(intPart, "0")
	frac = strings.TrimRight(frac, "0")

	// A uint64 has 20 digits at most; longer is an overflow whatever the unit,
	// and checking here keeps big.Int away from absurdly long inputs.
	if len(intPart) > 20 {
		return 0, false
	}
	var whole uint64
	if intPart != "" {
		w, err := strconv.ParseUint(intPart, 10, 64)
		if err != nil {
			return 0, false
		}
		whole = w
	}
	hi, lo := bits.Mul64(whole, mult)
	if hi != 0 {
		return 0, false
	}
	if frac == "" {
		return lo, true
	}

	// The fraction is below 1, so its share is below mult: exact big.Int
	// arithmetic on at most maxFractionDigits digits is cheap.
	sticky := false
	if len(frac) > maxFractionDigits {
		sticky = strings.Trim(frac[maxFractionDigits:], "0") != ""
		frac = frac[:maxFractionDigits]
	}
	f, ok := new(big.Int).SetString(frac, 10)
	if !ok {
		return 0, false
	}
	f.Mul(f, new(big.Int).SetUint64(mult))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := new(big.Int).QuoRem(f, den, new(big.Int))
	part := q.Uint64() // q < mult, so it fits
	if r.Sign() != 0 || sticky {
		part++
	}
	sum, carry := bits.Add64(lo, part, 0)
	if carry != 0 {
		return 0, false
	}
	return sum, true
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
	v := new(big.Int).Mul(new(big.Int).SetUint64(tenths), new(big.Int).SetUint64(unit))
	v.Add(v, big.NewInt(9))
	v.Quo(v, big.NewInt(10))
	return v.IsUint64()
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
