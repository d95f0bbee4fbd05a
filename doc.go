// Package hearsay is an eventually consistent key-value store replicated by
// gossip, usable as a library: every Node keeps a full replica, serves reads
// and writes locally, and converges with its peers through direct mail,
// rumor mongering and anti-entropy (Demers et al., "Epidemic Algorithms for
// Replicated Database Maintenance", 1987).
package hearsay
