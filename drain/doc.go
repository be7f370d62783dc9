// Package drain ends a process's work gracefully: it counts in-flight units of
// work, and once draining has started it reports the exact moment the count
// reaches zero, or the moment a deadline fires, whichever comes first.
//
// A drain never polls. The release that brings the in-flight count to zero
// closes [Controller.Done] itself, so an HTTP server served with [Serve]
// returns within microseconds of its last response instead of the up to
// 500 ms that [net/http.Server.Shutdown] may wait between polls.
//
// It imports nothing outside the standard library, and knows nothing of
// memory or of other processes: package memory decides when a process is
// over its limit, package standalone serves one process with both, and
// package cluster builds the supervisor of many.
package drain
