package engine

import (
	"math/rand/v2"
	"time"

	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/wire"
)

// View is the member view the engine composes its mechanisms over: the
// protocol that keeps it (fed every envelope and tick), and what direct
// mail, rumor mongering, anti-entropy and spread queries ask of it. The
// membership protocol's view (engine/membership) is the one a node runs;
// the simulator injects an oracle over its true live set through the same
// interface (Config.View), so the engine has one code path for both.
type View interface {
	// Handle takes what concerns the view in a received envelope: its
	// piggybacked member updates, and the whole envelope if it is the
	// view's own (handled). An error refuses the envelope.
	Handle(now time.Time, env *wire.Envelope) (handled bool, err error)
	// Tick runs the view's timers.
	Tick(now time.Time)
	// Deadline returns when Tick next has work to do, zero for never.
	Deadline() time.Time
	// Piggyback adds the view's news to an envelope about to be sent.
	Piggyback(env *wire.Envelope)
	// Sample returns up to k distinct live peers, uniformly at random.
	Sample(rng *rand.Rand, k int) []string
	// LivePeers returns the live peers' names.
	LivePeers() []string
	// HeardPeers returns the live peers heard from first-hand.
	HeardPeers() []string
	// Addr returns the gossip address of the peer named name: the one place
	// a name becomes an address.
	Addr(name string) (addr string, ok bool)
}

// memberView is the membership protocol's view.
type memberView struct{ *membership.Membership }

func (v memberView) Addr(name string) (string, bool) {
	m, ok := v.Get(name)
	return m.Addr, ok && m.Addr != ""
}
