package hearsay

import "github.com/hearsaydb/hearsay/engine"

// outgoingHook, when set (only by test builds with the faultinject tag, see
// floodinject.go), rewrites every batch of messages the node sends: how a
// real-process test makes a node misbehave on the wire.
var outgoingHook func([]engine.Message) []engine.Message
