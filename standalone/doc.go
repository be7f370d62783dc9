// Package standalone serves one HTTP server in one process, under
// Kubernetes, systemd or any supervisor that restarts it, and drains it
// exactly: on SIGTERM or SIGINT, when the context ends, or when the process
// passes its memory limit ([memory.Watch]; by default 90 % of its
// container's, [Options.ContainerLimitRatio]). Probes for Kubernetes can be
// served beside it ([Options.ProbeAddr]). Exit with [drain.Result.ExitCode]
// so that a drain on the process's own limit asks to be started again.
//
// It is a package of its own so that package drain imports only the
// standard library: the memory watch needs gopsutil.
package standalone
