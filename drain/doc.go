// Package drain ends a process's work gracefully: it counts in-flight units of
// work, and once draining has started it reports the exact moment the count
// reaches zero, or the moment a deadline fires, whichever comes first.
//
// A drain never polls. The release that brings the in-flight count to zero
// closes [Controller.Done] itself, so an HTTP server served with [Serve]
// returns within microseconds of its last response instead of the up to
// 500 ms that [net/http.Server.Shutdown] may wait between polls.
//
// The package also measures memory ([Sampler], [Watch]), reads the memory the
// process may use ([AvailableMemory]) and parses sizes the way Kubernetes does
// ([ParseSize]). It knows nothing of processes other than its own: package
// cluster builds the supervisor on top of it.
package drain
