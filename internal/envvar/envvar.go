// Package envvar reads settings from MEMDRAIN_* environment variables into
// a configuration struct, with the errors both cluster.FromEnv and
// standalone.OptionsFromEnv report: each names the variable, quotes its value
// and says what is accepted. It imports only the standard library, so that
// drain may use it.
package envvar

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MinDuration is the smallest non-zero duration a variable may set:
// anything shorter is a number that lost its unit.
const MinDuration = time.Microsecond

// A Var is one environment variable that sets a field of a T.
type Var[T any] struct {
	Name  string // the variable
	Field string // the field of T it sets
	// YieldsTo is the variable that wins when both are set (Node's names
	// yield to memdrain's own). Empty for memdrain's.
	YieldsTo string
	Accepted string // what a value may be, for errors
	Example  string // a valid value that sets Field to a non-zero value
	// Set parses v (trimmed, not empty) into c's field. If v cannot be
	// used it reports false, with what is wrong with v beyond not being
	// accepted ("negative", a hint), or "".
	Set func(c *T, v string) (problem string, ok bool)
}

// Read returns base with each of vars that lookup finds set and not empty
// applied to it, in order. It reports every variable it cannot use, joined
// with errors.Join, each error starting with pkg ("cluster", "drain"; ""
// for none); on an error it returns base unchanged.
func Read[T any](pkg string, base T, vars []Var[T], lookup func(string) (string, bool)) (T, error) {
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	c := base
	var errs []error
	for _, e := range vars {
		v, ok := get(e.Name)
		if !ok {
			continue
		}
		if e.YieldsTo != "" {
			if _, primary := get(e.YieldsTo); primary {
				continue
			}
		}
		if problem, ok := e.Set(&c, v); !ok {
			errs = append(errs, e.Error(pkg, v, problem))
		}
	}
	if len(errs) > 0 {
		return base, errors.Join(errs...)
	}
	return c, nil
}

// Error returns the error Read reports for the value v of e, starting
// with pkg and a colon unless pkg is empty.
func (e Var[T]) Error(pkg, v, problem string) error {
	if pkg != "" {
		pkg += ": "
	}
	switch {
	case problem == "":
		return fmt.Errorf("%s%s=%q: accepted: %s", pkg, e.Name, v, e.Accepted)
	case strings.Contains(problem, "accepted:"):
		// drain's parsers already list what they accept, more precisely.
		return fmt.Errorf("%s%s=%q: %s", pkg, e.Name, v, problem)
	default:
		return fmt.Errorf("%s%s=%q: %s; accepted: %s", pkg, e.Name, v, problem, e.Accepted)
	}
}

// Count parses a whole number ≥ 0.
func Count(v string) (int, string, bool) {
	n, err := strconv.Atoi(v)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, "out of range", false
	case err != nil:
		return 0, "", false
	case n < 0:
		return 0, "negative", false
	}
	return n, "", true
}

// Duration parses a Go duration ≥ 0. A bare number other than 0 is
// refused with a hint in hintUnit, the unit the setting is usually given
// in: "250" could be seconds or milliseconds, and guessing wrong is off by
// a factor of a thousand.
func Duration(v, hintUnit string) (time.Duration, string, bool) {
	d, err := time.ParseDuration(v)
	switch {
	case err == nil:
	case isPlainNumber(v) && strings.HasPrefix(v, "-"):
		return 0, "negative", false
	case isPlainNumber(v):
		return 0, fmt.Sprintf("a number without a unit; did you mean %q?", strings.TrimPrefix(v, "+")+hintUnit), false
	case durationOverflows(v):
		return 0, "out of range", false
	default:
		return 0, "", false
	}
	if d < 0 {
		return 0, "negative", false
	}
	if d > 0 && d < MinDuration {
		return 0, fmt.Sprintf("shorter than %v", MinDuration), false
	}
	return d, "", true
}

// Millis parses Node's CHECK_INTERVAL convention: a whole number is
// milliseconds; a Go duration, which cannot be mistaken, is taken too.
func Millis(v string) (time.Duration, string, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, "out of range", false
		}
		return Duration(v, "ms")
	}
	switch {
	case n < 0:
		return 0, "negative", false
	case n > math.MaxInt64/int64(time.Millisecond):
		return 0, "out of range", false
	}
	return time.Duration(n) * time.Millisecond, "", true
}

// SoftLimit parses MEMDRAIN_SOFT_LIMIT: a fraction in (0, 1], or "off",
// which it returns as -1 (any negative ratio means off; -1 reads as "off"
// in a dump).
func SoftLimit(v string) (float64, string, bool) {
	if strings.EqualFold(v, "off") {
		return -1, "", true
	}
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		if r, err := strconv.ParseFloat(strings.TrimSpace(pct), 64); err == nil && r > 0 && r <= 100 {
			return 0, fmt.Sprintf("a percentage; did you mean %q?", strconv.FormatFloat(r/100, 'f', -1, 64)), false
		}
		return 0, "", false
	}
	r, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil || math.IsNaN(r):
		return 0, "", false
	case r == 0:
		return 0, `0 is not a fraction in (0, 1]; did you mean "off"?`, false
	case r < 0:
		return 0, `negative; did you mean "off"?`, false
	case r > 1 && r <= 100:
		return 0, fmt.Sprintf("more than 1; did you mean %q?", strconv.FormatFloat(r/100, 'f', -1, 64)), false
	case r > 1:
		return 0, "more than 1", false
	}
	return r, "", true
}

// isPlainNumber reports whether v is a decimal number with no unit, such
// as "250", "-1" or "1.5".
func isPlainNumber(v string) bool {
	v = strings.TrimLeft(v, "+-")
	digits, dots := 0, 0
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// durationOverflows reports whether v, which time.ParseDuration refused, is
// a well-formed duration whose numbers are too large: time.ParseDuration
// says "invalid duration" for both. It is, if v parses with each of its
// numbers replaced by 1.
func durationOverflows(v string) bool {
	var b strings.Builder
	inNumber, digits, dots := false, 0, 0
	for _, r := range v {
		if r >= '0' && r <= '9' || r == '.' {
			if !inNumber {
				b.WriteByte('1')
				inNumber, digits, dots = true, 0, 0
			}
			if r == '.' {
				dots++
			} else {
				digits++
			}
			if dots > 1 {
				return false
			}
			continue
		}
		if inNumber && digits == 0 {
			return false
		}
		inNumber = false
		b.WriteRune(r)
	}
	if inNumber && digits == 0 {
		return false
	}
	_, err := time.ParseDuration(b.String())
	return err == nil
}
