package main

import (
	"time"
)

// observer receives what the nodes of a cluster see. Nodes are numbered
// 0..n-1; node 0 is the seed and the writer, never the one stopped.
type observer struct {
	// suspect and dead: node saw member (a node name) suspected or dead.
	suspect func(node int, member string, at time.Time)
	dead    func(node int, member string, at time.Time)
	// deliver: node received update id.
	deliver func(node int, id int, at time.Time)
}

// system is one of the two gossip libraries under test, as n nodes on
// loopback in this process.
type system interface {
	// Name is "memberlist" or the hearsay mode (hearsay, hearsay-rumor,
	// hearsay-plumtree).
	Name() string
	// Start starts n nodes, joins them through node 0 and returns when
	// every node sees n live members, or fails after timeout.
	Start(n int, obs *observer, timeout time.Duration) error
	// NodeName is the member name of node i.
	NodeName(i int) string
	// Kill stops node i abruptly: no leave is announced.
	Kill(i int) error
	// CanBroadcast says whether a value of size bytes can be broadcast at
	// all, and why not.
	CanBroadcast(size int) (bool, string)
	// Broadcast sends update id carrying value from node 0 to every node.
	Broadcast(id int, value []byte) error
	// BytesSent is the total of bytes all nodes have put on the wire
	// (datagrams and stream writes) since Start.
	BytesSent() uint64
	// Close stops every node still running.
	Close()
}
