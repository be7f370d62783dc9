//go:build !linux && !darwin

package connpass

import (
	"errors"
	"os"
)

// Dup is not supported here: connections are passed between processes on
// Linux and macOS only.
func Dup(any) (*os.File, error) {
	return nil, errors.New("passing a descriptor is supported on linux and darwin only")
}
