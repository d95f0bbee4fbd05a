package hearsay

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Node. Start from DefaultConfig and change what you need.
type Config struct {
	// Name is the member name, unique in the cluster. Required.
	Name string
	// Cluster names the cluster; messages from nodes of another cluster are
	// ignored. Default "hearsay".
	Cluster string
	// DataDir is where the replica and the outboxes are kept. Empty means an
	// in-memory store that a restart loses (tests, experiments).
	DataDir string
	// BindAddr is the gossip address to listen on, UDP and TCP, host:port.
	// Port 0 picks a free port.
	BindAddr string
	// AdvertiseAddr is the gossip address other nodes use to reach this one,
	// when it differs from BindAddr (NAT, containers). Empty means BindAddr
	// (with an unspecified host replaced by a local address).
	AdvertiseAddr string
	// Seeds are gossip addresses of members to join at start. Joining is
	// retried with backoff until one answers.
	Seeds []string
	// MaxValueSize is the largest value accepted, in bytes. Default 1 MiB.
	MaxValueSize int
	// NoSync turns off fsync before a write is acknowledged. Faster, and a
	// crash may lose acknowledged writes. Default false: durable.
	NoSync bool
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the node's Prometheus metrics.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config with the defaults for a LAN cluster.
func DefaultConfig() Config {
	return Config{
		Cluster:      "hearsay",
		BindAddr:     "0.0.0.0:7946",
		MaxValueSize: 1 << 20,
	}
}

// Node is one hearsay replica: it stores a full copy of the data, serves
// reads and writes locally and gossips with its peers. Its methods are safe
// for concurrent use.
type Node struct{}

var errTODO = errors.New("hearsay: not implemented yet")

// Open starts a node: it opens (or creates) the store, binds the transport,
// and starts joining the seeds.
func Open(cfg Config) (*Node, error) { return nil, errTODO }

// Put writes key=value and returns the version it was written at, once the
// write is durable here. The write then spreads to the other members.
func (n *Node) Put(ctx context.Context, key, value []byte) (Version, error) {
	return Version{}, errTODO
}

// Get returns the current value of key, or ErrNotFound.
func (n *Node) Get(ctx context.Context, key []byte) (Entry, error) { return Entry{}, errTODO }

// Delete removes key by writing a tombstone, and returns its version.
// Deleting an absent key still writes a tombstone, so that a concurrent
// older write elsewhere cannot come back.
func (n *Node) Delete(ctx context.Context, key []byte) (Version, error) {
	return Version{}, errTODO
}

// Scan returns up to limit live entries whose key has the given prefix and
// is at or after start, in key order. limit <= 0 means no limit.
func (n *Node) Scan(ctx context.Context, prefix, start []byte, limit int) ([]Entry, error) {
	return nil, errTODO
}

// Watch streams every change to keys with the given prefix, local or learned
// from peers, until ctx is done; then the channel is closed. A watcher that
// does not keep up loses events rather than slowing the node: the channel is
// closed early and the caller should Scan and Watch again.
func (n *Node) Watch(ctx context.Context, prefix []byte) (<-chan Event, error) {
	return nil, errTODO
}

// Members returns the membership view, this node included, sorted by name.
func (n *Node) Members() []Member { return nil }

// Status describes this node.
func (n *Node) Status() Status { return Status{} }

// Join contacts the given gossip addresses and joins the cluster through
// the first that answers. It returns the number of seeds that answered.
func (n *Node) Join(ctx context.Context, seeds []string) (int, error) { return 0, errTODO }

// Leave announces a graceful departure and waits (until ctx is done) for
// the announcement to reach the other members.
func (n *Node) Leave(ctx context.Context) error { return errTODO }

// Close stops the node and closes the store. It does not announce a leave:
// call Leave first for a graceful departure.
func (n *Node) Close() error { return errTODO }
