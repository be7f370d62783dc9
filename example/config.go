package main

import (
	"flag"
	"fmt"
	"runtime"
	"strings"

	"github.com/memdrain/memdrain/cluster"
	"github.com/memdrain/memdrain/memory"
)

// config returns the cluster's Config. Each setting comes from its flag if
// the flag was given on the command line, else from its MEMDRAIN_* variable
// if that is set (cluster.FromEnv, which also reads the variables that have
// no flag here), else from the flag's default. Bad values, of flags or
// variables, are errors naming them.
func (o options) config() (cluster.Config, error) {
	limit, err := memory.ParseMemoryLimit(o.maxMemory)
	if err != nil {
		return cluster.Config{}, fmt.Errorf("-max-memory: %w", err)
	}
	flags := cluster.Config{
		Listen:    []string{o.addr},
		Workers:   o.workers,
		MaxMemory: limit,
	}
	cfg, err := cluster.FromEnv(flags)
	if err != nil {
		return cluster.Config{}, err
	}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "addr":
			cfg.Listen = flags.Listen
		case "workers":
			cfg.Workers = flags.Workers
		case "max-memory":
			cfg.MaxMemory = flags.MaxMemory
		}
	})
	if len(cfg.Listen) != 1 || strings.HasPrefix(cfg.Listen[0], "unix:") {
		return cluster.Config{}, fmt.Errorf("MEMDRAIN_LISTEN=%q: accepted here: one TCP address (host:port), which the example serves and loads; or use -addr",
			strings.Join(cfg.Listen, ","))
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0) // cluster's default, resolved so the report can print it
	}
	return cfg, nil
}
