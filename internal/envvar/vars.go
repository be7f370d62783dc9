package envvar

import (
	"fmt"
	"time"
)

// The variables of one kind, for any configuration T. Each reads its value
// with the parser of its kind into the field dst returns. zero says, in
// errors, what 0 (or unset) means: "the default 1s", "off", "no limit".

// CountVar is a whole number ≥ 0.
func CountVar[T any](name, field string, dst func(*T) *int, zero string) Var[T] {
	return Var[T]{
		Name:     name,
		Field:    field,
		Accepted: fmt.Sprintf("a whole number ≥ 0 (0 = %s)", zero),
		Example:  "7",
		Set: func(c *T, v string) (string, bool) {
			n, problem, ok := Count(v)
			if ok {
				*dst(c) = n
			}
			return problem, ok
		},
	}
}

// DurationVar is a Go duration; a number without a unit gets hintUnit
// suggested.
func DurationVar[T any](name, field string, dst func(*T) *time.Duration, hintUnit, zero string) Var[T] {
	return Var[T]{
		Name:     name,
		Field:    field,
		Accepted: fmt.Sprintf("a Go duration such as %q or %q, ≥ 0 (0 = %s)", "30s", "250ms", zero),
		Example:  "1m30s",
		Set: func(c *T, v string) (string, bool) {
			d, problem, ok := Duration(v, hintUnit)
			if ok {
				*dst(c) = d
			}
			return problem, ok
		},
	}
}

// MillisVar is Node's convention, a whole number of milliseconds (a Go
// duration is taken too); it yields to yieldsTo when both are set.
func MillisVar[T any](name, yieldsTo, field string, dst func(*T) *time.Duration, zero string) Var[T] {
	return Var[T]{
		Name:     name,
		Field:    field,
		YieldsTo: yieldsTo,
		Accepted: fmt.Sprintf("a whole number of milliseconds (Node's convention) or a Go duration such as %q, ≥ 0 (0 = %s)", "250ms", zero),
		Example:  "250",
		Set: func(c *T, v string) (string, bool) {
			d, problem, ok := Millis(v)
			if ok {
				*dst(c) = d
			}
			return problem, ok
		},
	}
}

// SizeVar is a memory size read by parse (memory.ParseMemoryLimit, which
// this package cannot import: drain imports it).
func SizeVar[T any](name, field string, dst func(*T) *uint64, zero string, parse func(string) (uint64, error)) Var[T] {
	return Var[T]{
		Name:     name,
		Field:    field,
		Accepted: fmt.Sprintf("a size such as %q, %q or %q, at least 1Mi, or 0 for %s", "400Mi", "1.5Gi", "512MB", zero),
		Example:  "1.5Gi",
		Set: func(c *T, v string) (string, bool) {
			n, err := parse(v)
			if err != nil {
				return err.Error(), false
			}
			*dst(c) = n
			return "", true
		},
	}
}

// SoftLimitVar is a fraction of MEMDRAIN_MAX_MEMORY, or "off".
func SoftLimitVar[T any](name, field string, dst func(*T) *float64, unset string) Var[T] {
	return Var[T]{
		Name:     name,
		Field:    field,
		Accepted: fmt.Sprintf("a fraction of MEMDRAIN_MAX_MEMORY in (0, 1] such as %q, or %q for no soft limit (unset = %s)", "0.8", "off", unset),
		Example:  "0.75",
		Set: func(c *T, v string) (string, bool) {
			r, problem, ok := SoftLimit(v)
			if ok {
				*dst(c) = r
			}
			return problem, ok
		},
	}
}
