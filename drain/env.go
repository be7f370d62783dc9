package drain

import (
	"fmt"
	"os"
	"time"

	"github.com/memdrain/memdrain/internal/envvar"
)

// ConfigFromEnv returns base with Timeout overridden by
// MEMDRAIN_DRAIN_TIMEOUT (a Go duration such as "25s"; "0" for
// DefaultTimeout), the variable cluster.FromEnv reads into DrainTimeout,
// with the same errors. On an error it returns base unchanged.
func ConfigFromEnv(base Config) (Config, error) {
	return envvar.Read("drain", base, configVars, os.LookupEnv)
}

var configVars = []envvar.Var[Config]{
	envvar.DurationVar("MEMDRAIN_DRAIN_TIMEOUT", "Timeout", func(c *Config) *time.Duration { return &c.Timeout },
		"s", fmt.Sprintf("the default %v", DefaultTimeout)),
}
