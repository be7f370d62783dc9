// Package memory measures a process's memory and decides when it is over
// its limit.
//
//   - A [Sampler] measures one process: [RSS], [Anon] (resident anonymous
//     memory, what a leak grows) or [GoRuntime] (this process, no system
//     call).
//   - A [Meter] decides, one sample at a time, whether a process is over
//     its limit and when to sample next, pacing its samples by the growth
//     rate instead of a fixed interval.
//   - A [Watch] runs a Meter over one process and starts a
//     [drain.Controller]'s drain at the limit.
//   - [AvailableMemory] reads the limit the process runs under (its cgroup,
//     else the machine), and [ParseSize] and [FormatSize] read and write
//     sizes the way Kubernetes does ("400Mi", "1.5Gi").
//
// Package cluster uses the samplers and the Meter for its workers;
// package standalone uses the Watch for one process.
package memory
