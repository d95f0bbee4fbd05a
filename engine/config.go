package engine

import (
	"time"

	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/engine/directmail"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/engine/plumtree"
	"github.com/hearsaydb/hearsay/engine/rumor"
	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/store"
)

// Config configures an Engine. Start from DefaultConfig: the zero value
// switches every mechanism off.
type Config struct {
	// Name is this member's name, unique in the cluster.
	Name string
	// NodeID is this node's id, the tie-breaker in every version it writes.
	// It must be unique in the cluster and stable across restarts.
	NodeID uint64
	// Cluster names the cluster; envelopes from another cluster are refused.
	Cluster string
	// Addr is the gossip address other members reach this node at.
	Addr string

	// MaxValueSize is the largest value accepted, written here or received.
	MaxValueSize int
	// MaxClockSkew is how far ahead of this node's clock a received
	// version's timestamp may be. A record further in the future is refused,
	// and stays refused when it comes again later (see refusedFuture):
	// accepted, it would win every conflict until the clocks caught up.
	// Twice MaxClockOffset by default: two healthy nodes may each be up to
	// MaxClockOffset from the cluster's median, on either side.
	MaxClockSkew time.Duration
	// MaxClockOffset is how far this node's clock may be from the
	// cluster's (the median of the offsets measured to its peers, see
	// membership.ClockOffset) before it refuses local writes with
	// ErrClockOffset, as CockroachDB's --max-offset: versions from a clock
	// that far off would be refused by the peers, or would win conflicts
	// they should lose. A node with live peers also refuses writes until it
	// has measured one offset. 0 switches the check off.
	MaxClockOffset time.Duration

	// DirectMail sends each local write at once to every live member, while
	// the cluster has at most DirectMailMaxPeers other live members (0: no
	// limit). Beyond that, mailing everyone costs more than rumors do.
	DirectMail         bool
	DirectMailMaxPeers int
	// DirectMailWindow batches local writes for direct mail: the first
	// write after mail went out opens a window, and every write made in it
	// goes in the same mail to each peer when it closes. Fewer, larger
	// mails (one mail and one ack per peer per window instead of per
	// batch of writes) for at most this much more latency. 0 mails the
	// writes of each batch at once.
	DirectMailWindow time.Duration
	// RumorMongering makes every new update a hot rumor, spread epidemically
	// (see package rumor).
	RumorMongering bool
	Rumor          rumor.Config
	// Plumtree spreads every new update along an epidemic broadcast tree
	// (see package plumtree): one whole copy per node over tree links,
	// announcements over the others. An alternative to rumor mongering
	// beyond the direct-mail limit; switch RumorMongering off with it.
	Plumtree bool
	Tree     plumtree.Config
	// RumorRepairs hands records that anti-entropy found new to this node
	// to rumor mongering (and to the broadcast tree, with Plumtree), so
	// that a repair spreads at epidemic speed instead of one exchange at a
	// time.
	RumorRepairs bool
	// AntiEntropy makes this node reconcile its whole replica with a random
	// live peer every interval, collect tombstones after their grace
	// period and refuse to serve after a long absence until it has pulled
	// (see package antientropy). A node without it still answers peers.
	AntiEntropy bool
	AE          antientropy.Config

	Membership membership.Config
	Mail       directmail.Config
	// Trust scores peers by the offences this node can check and
	// quarantines those that commit too many (see package trust). The zero
	// value is the defaults, with quarantine on.
	Trust trust.Config
	// RateLimits bounds the requests each peer may send: those beyond are
	// dropped and scored as rate_limit offences. The zero value is the
	// defaults, on.
	RateLimits RateLimits

	// Signer, when set, makes this a certificate cluster (Settings.Signing
	// "ed25519"): every local write is signed with this node's key, and
	// every received record must carry a signature that verifies against
	// the certificate of the node whose id is its version's node, or it is
	// refused. NodeID must be the one the certificate binds. Nil: an
	// unsigned cluster.
	Signer Signer
	// MaxCerts bounds the node certificates held (0: twice
	// Membership.MaxMembers, or twice its default). Beyond it the one
	// learned first is forgotten, and asked for again when needed.
	MaxCerts int

	// View, when set, is the member view the mechanisms choose gossip
	// partners from, list live peers from and address peers through, in
	// place of the view the membership protocol keeps (engine/membership):
	// the simulator's oracle over the true live set. The membership
	// protocol still answers joins, clock and leave queries, but is fed
	// nothing through a View that handles nothing. Nil: membership's view.
	View View

	// CheckReserved, when set, checks every record under ReservedPrefix,
	// received or written here, before it is applied: a record it refuses
	// is refused like a bad record. A node with certificates checks that a
	// record under RevokedPrefix is a revocation signed by the cluster CA;
	// an accepted one revokes the member it names (see Engine.Revoke).
	// Without it, reserved records are applied like any other.
	CheckReserved func(key, value []byte, tombstone bool) error
	// Revoked, when set (in a certificate cluster), says whether the node
	// named name has been revoked and since when: records it signed with a
	// version after that time are refused everywhere, whoever relays them.
	Revoked func(name string) (at time.Time, ok bool)
}

// DefaultConfig returns the defaults for a LAN cluster of 3 to 1,000 nodes,
// with every mechanism switched on. Name, NodeID and Addr must be set.
func DefaultConfig() Config {
	return Config{
		Cluster:            "hearsay",
		MaxValueSize:       store.DefaultMaxValueSize,
		MaxClockSkew:       time.Second,
		MaxClockOffset:     500 * time.Millisecond,
		DirectMail:         true,
		DirectMailMaxPeers: 64,
		RumorMongering:     true,
		RumorRepairs:       true,
		Rumor:              rumor.DefaultConfig(),
		Tree:               plumtree.DefaultConfig(),
		AntiEntropy:        true,
		AE:                 antientropy.DefaultConfig(),
		Membership:         membership.DefaultConfig(),
		Mail:               directmail.DefaultConfig(),
		Trust:              trust.DefaultConfig(),
		RateLimits:         DefaultRateLimits(),
	}
}
