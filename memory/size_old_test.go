package memory

// The size parser as it was until the memory package was split out of
// drain (327 lines, big.Int fractions). FuzzParseSizeAgreesWithTheOld
// proves the rewrite accepts exactly what it accepted, with the same
// results and the same errors.

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
	"testing"
)

const oldAcceptedSizes = "accepted: a number of bytes, or a number followed by " +
	"k, M, G, T (powers of 1000), Ki, Mi, Gi, Ti (powers of 1024), " +
	"or KB, MB, GB, TB, KiB, MiB, GiB, TiB"

// oldBareUnits are the Kubernetes quantity suffixes. They are matched
// case-sensitively, as Kubernetes does, because there the case carries
// meaning: "m" is milli, not mega. "K" is not a Kubernetes suffix but is
// accepted as a synonym of "k" because nothing else could be meant by it.
var oldBareUnits = map[string]uint64{
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

// oldByteUnits are the spellings ending in B. They are matched without regard to
// case: a trailing B can only mean bytes in a memory size, so "mb" and "Mb" are
// unambiguous typos for MB, and refusing them would only annoy.
var oldByteUnits = map[string]uint64{
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

// oldMaxFractionDigits bounds the fraction kept for exact arithmetic. The
// largest multiplier is 2^40 < 10^13, so digits past the 40th move the result
// by far less than one byte; only whether any of them is non-zero matters,
// for rounding up. The bound keeps a pathological input from costing more
// than a few big.Int operations on small numbers.
const oldMaxFractionDigits = 40

// oldParseSize parses a size in bytes written the way Kubernetes writes resource
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
// oldParseSize computes exactly, without floating point, so every integer that
// fits in a uint64 parses to itself. Signs, exponents ("1e9"), NaN and
// infinities, more than one decimal point, unknown units and sizes beyond the
// range of a uint64 are rejected with an error that quotes the input and
// lists the accepted forms. oldParseSize never panics.
func oldParseSize(s string) (uint64, error) {
	fail := func(format string, args ...any) (uint64, error) {
		return 0, fmt.Errorf("size %q: %s; %s", s, fmt.Sprintf(format, args...), oldAcceptedSizes)
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
		case oldIsNaNOrInf(t):
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

	mult, ok := oldUnitMultiplier(unit)
	if !ok {
		switch {
		case unit == "m":
			// In Kubernetes "400m" is 0.4 bytes; nobody means that for memory.
			return fail("unit %q means milli (1/1000) in Kubernetes; write \"M\" (10^6) or \"Mi\" (2^20)", unit)
		case unit[0] == '-' || unit[0] == '+':
			return fail("unexpected sign in %q", unit)
		default:
			if hint := oldCaseHint(unit); hint != "" {
				return fail("unknown unit %q (units are case-sensitive, as in Kubernetes: did you mean %q?)", unit, hint)
			}
			return fail("unknown unit %q", unit)
		}
	}

	v, ok := oldScale(num, mult)
	if !ok {
		return fail("more than the largest size, %d bytes", uint64(math.MaxUint64))
	}
	return v, nil
}

// oldUnitMultiplier returns the number of bytes in one unit.
func oldUnitMultiplier(unit string) (uint64, bool) {
	if m, ok := oldBareUnits[unit]; ok {
		return m, true
	}
	if len(unit) > 0 && (unit[len(unit)-1] == 'b' || unit[len(unit)-1] == 'B') {
		m, ok := oldByteUnits[strings.ToLower(unit)]
		return m, ok
	}
	return 0, false
}

// oldCaseHint returns the bare unit that unit would be if it were spelled with
// the right case, or "" if there is none.
func oldCaseHint(unit string) string {
	for u := range oldBareUnits {
		if u != "" && u != "K" && strings.EqualFold(u, unit) {
			return u
		}
	}
	return ""
}

func oldIsNaNOrInf(s string) bool {
	switch strings.ToLower(s) {
	case "nan", "inf", "infinity":
		return true
	}
	return false
}

// scale returns ceil(num × mult), where num is a non-negative decimal with at
// most one point and at least one digit. It reports false if the result does
// not fit in a uint64.
func oldScale(num string, mult uint64) (uint64, bool) {
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
	// arithmetic on at most oldMaxFractionDigits digits is cheap.
	sticky := false
	if len(frac) > oldMaxFractionDigits {
		sticky = strings.Trim(frac[oldMaxFractionDigits:], "0") != ""
		frac = frac[:oldMaxFractionDigits]
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

func FuzzParseSizeAgreesWithTheOld(f *testing.F) {
	for _, s := range []string{
		"400Mi", "1.5Gi", "512k", "1e9", "400m", "18446744073709551615", "18446744073709551614.5",
		"18446744073709551616", " 400 MiB ", "-1", "NaN", "1..5", ".5", "", "0.001Ki", "1.1Ti",
		"400g", "400KI", "kI", "5-3", "1E", "E5", "+", "-", ".", "i", "iB", "1 k b", "0x10",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSize(s)
		want, wantErr := oldParseSize(s)
		if got != want || (err == nil) != (wantErr == nil) {
			t.Fatalf("ParseSize(%q) = %d, %v; the old parser: %d, %v", s, got, err, want, wantErr)
		}
		if err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("ParseSize(%q) error\n%v\nthe old parser's\n%v", s, err, wantErr)
		}
	})
}
