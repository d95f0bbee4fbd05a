// Package membership keeps a node's view of the cluster and detects failed
// members. It follows SWIM (Das, Gupta and Motivala, "SWIM: Scalable
// Weakly-consistent Infection-style Process Group Membership Protocol",
// 2002) with the Lifeguard refinements (Dadgar, Phillips and Currey,
// "Lifeguard: Local Health Awareness for More Accurate Failure Detection",
// 2018):
//
//   - each protocol period the node probes one member, chosen in a shuffled
//     round-robin order (SWIM §4.3); without an ack within the probe timeout
//     it asks k other members to probe it indirectly (ping-req, SWIM §3.1),
//     and those answer with a nack when the target stays silent (Lifeguard);
//   - a member that answers neither way becomes suspect (SWIM §4.2); a
//     suspect that does not refute, by raising its incarnation, within the
//     suspicion timeout is declared dead. The timeout scales with log(n) and
//     shrinks, from a maximum to a minimum, as independent accusers confirm
//     the suspicion (Lifeguard, "Local Health Aware Suspicion");
//   - a node keeps a local health score, raised by probes that fail without
//     the expected nacks and by accusations against itself, lowered by
//     probes that succeed; the score stretches its own probe interval and
//     timeout, so that a slow node does not accuse healthy ones (Lifeguard,
//     "Local Health Aware Probe");
//   - a probe of a suspect carries the suspicion, so that the suspect hears
//     it at once and can refute it (Lifeguard, "Buddy System");
//   - state changes spread by piggybacking on every message the node sends,
//     each retransmitted a number of times that grows with log(n) (SWIM
//     §4.1); dead members are pinged now and then, so that the two sides of
//     a healed partition find each other again; dead and left members are
//     forgotten (reaped) after a while.
//
// The package is pure: time and randomness come from the caller, and
// messages leave through the send function it was given.
package membership

import (
	"cmp"
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Config tunes failure detection and dissemination.
type Config struct {
	// ProbeInterval is the protocol period: one member is probed per period.
	// A failed probe is judged at the end of its period, so it also bounds
	// the wait for indirect acks.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a direct ack before asking other
	// members to probe indirectly. It must exceed a round trip and stay well
	// below ProbeInterval, which leaves the rest of the period for the
	// indirect probes (two round trips).
	ProbeTimeout time.Duration
	// IndirectChecks is k, the number of members asked to probe a member
	// that did not answer directly (SWIM §3.1). 0 disables indirect probes.
	IndirectChecks int
	// SuspicionTimeout is the shortest time a suspect has to refute in a
	// cluster of up to 10 members; it grows with log10 of the cluster size
	// (SWIM §4.2: a suspicion needs O(log n) periods to reach everyone), so
	// 2x for 100 members and 3x for 1,000. Five seconds lets a node that
	// restarts in a few seconds come back with a higher incarnation before
	// it is declared dead, which keeps its direct-mail outboxes.
	SuspicionTimeout time.Duration
	// SuspicionMaxMult sets the longest suspicion timeout, as a multiple of
	// the shortest. A suspicion starts at the longest and falls to the
	// shortest as SuspicionConfirmations independent accusers confirm it
	// (Lifeguard): a lone accuser, which may be the faulty one, must wait
	// longer than a crowd. 1 makes the timeout fixed.
	SuspicionMaxMult int
	// SuspicionConfirmations is K, the number of independent confirmations
	// that bring a suspicion down to its shortest timeout. Capped by the
	// number of members that could confirm (n-2).
	SuspicionConfirmations int
	// MaxLocalHealth is the highest local health score: probe interval and
	// timeout are multiplied by score+1, up to MaxLocalHealth+1. 0 switches
	// local health awareness off.
	MaxLocalHealth int
	// RetransmitMult scales how many times each state change is piggybacked:
	// RetransmitMult * ceil(log10(n+1)) times, enough to reach every member
	// with high probability (SWIM §4.1).
	RetransmitMult int
	// MaxPiggyback caps the updates attached to one message, so that
	// small messages stay within one datagram.
	MaxPiggyback int
	// GossipInterval and GossipNodes: while updates wait to be
	// piggybacked, every GossipInterval they are also sent, on an otherwise
	// empty message, to GossipNodes random live members. Probes alone
	// carry news too slowly when loss is high or local health stretches
	// the probe interval, and a refutation that arrives late is a false
	// death. Neither is scaled by local health. GossipNodes 0 disables it.
	GossipInterval time.Duration
	GossipNodes    int
	// JoinRetryMin and JoinRetryMax bound the backoff between join attempts.
	JoinRetryMin, JoinRetryMax time.Duration
	// PushPullInterval is how often a node exchanges its whole member list
	// with a random live member (a push-pull, as a join does), so that
	// views that gossip left apart (a lost update, a healed partition)
	// agree again. It grows with the cluster beyond 32 members, as
	// memberlist's does, to keep the cost per node bounded. 0 disables it.
	PushPullInterval time.Duration
	// JoinSyncInterval and JoinSyncMax: after joining, a node pushes and
	// pulls member lists with random members every JoinSyncInterval while
	// the exchanges show views that differ, at most JoinSyncMax times.
	// Nodes that join one seed at once each get the seed's list as it was
	// when they asked; these exchanges spread the later arrivals in a few
	// round trips instead of one piggybacked update at a time.
	JoinSyncInterval time.Duration
	JoinSyncMax      int
	// ReconnectInterval is how often a dead or left member is pinged, with
	// the news of its state attached: a member that was only cut off
	// refutes its death, which heals a partition, and a member that left
	// and started again answers at a higher incarnation and is admitted
	// again. 0 disables it.
	ReconnectInterval time.Duration
	// ReapTimeout is how long a dead or left member stays in the view before
	// it is forgotten; after that its name can join again at any
	// incarnation. 0 keeps them forever.
	ReapTimeout time.Duration
	// MaxMembers caps the view, self and dead members included: updates
	// about further members are refused (Stats.MembersRefused) until some
	// are reaped. 0 means DefaultMaxMembers (4096); negative, no cap.
	MaxMembers int
	// MaxNewMembersPerSecond caps how many members one sender may add to
	// the view per second by second-hand news (piggybacked updates, the
	// list of a Join it sends); beyond it they are dropped
	// (Stats.MembersLimited) and learned later. A member's news about
	// itself and the reply to this node's own join or push-pull are not
	// limited. 0 means DefaultMaxNewMembersPerSecond (32); negative, no
	// limit. See limits.go.
	MaxNewMembersPerSecond int
	// RelayDelay is how long, with the defences on (SetDefences), a member
	// learned second-hand and not heard from since is held back before
	// this node relays it (vouch.go): long enough for the flooder that
	// invented it to be quarantined first. A member heard from is relayed
	// at once. 0 means DefaultRelayDelay (5 s); negative, no delay.
	RelayDelay time.Duration
}

// DefaultConfig suits a LAN of 3 to 1,000 members: it is LANConfig (see
// profile.go for the profiles and why each value is what it is).
func DefaultConfig() Config {
	return LANConfig()
}

// Member is one entry of the view.
type Member struct {
	Name        string
	Addr        string
	NodeID      uint64
	Incarnation uint64
	State       wire.State
	// Since is when this node last saw the member change state.
	Since time.Time
	// Clock is the last measurement of the member's clock against this
	// node's (zero Clock.At: never measured).
	Clock ClockSample
	// Heard is true once this node has received a message from the member
	// itself since it was last added or came back, as opposed to news of
	// it from others (see HeardPeers).
	Heard bool
	// Quarantined is true while this node's scores of its peers keep the
	// member in quarantine (see SetQuarantined).
	Quarantined bool
	// From and Sig are, in a certificate cluster (SetSigner), the accuser
	// and the signature of the claim that set the member's current state
	// (for alive and left, signed by the member itself: From is empty),
	// forwarded as they came. Nil Sig: unsigned.
	From string
	Sig  []byte
	// Revoked is true for a member whose certificate was revoked (see
	// Membership.Revoke): it stays dead and is never forgotten.
	Revoked bool

	// via are the members that told this node of the member, while it is
	// unconfirmed: learned second-hand, not heard from since (vouch.go).
	via []string
	// held is true while an unconfirmed member waits to be relayed.
	held bool
}

// Live reports whether the member takes part in the protocol: alive or
// suspect.
func (m Member) Live() bool { return m.State == wire.State_ALIVE || m.State == wire.State_SUSPECT }

func (m Member) toWire() *wire.Member {
	w := &wire.Member{Name: m.Name, Address: m.Addr, Incarnation: m.Incarnation, State: m.State, NodeId: m.NodeID}
	if len(m.Sig) > 0 {
		w.From, w.Sig = m.From, m.Sig
	}
	return w
}

// Event reports that a member changed state in this node's view.
type Event struct {
	Member Member
	// Prev is the state before the change; Joined is true when the member
	// was not known before (Prev is then its first state).
	Prev   wire.State
	Joined bool
	// Removed is true when a dead or left member is reaped from the view;
	// Member is its last entry.
	Removed bool
}

// Stats counts what the failure detector did.
type Stats struct {
	Probes        uint64 // direct probes sent
	ProbesFailed  uint64 // probes answered neither directly nor indirectly
	PingReqs      uint64 // indirect probe requests sent
	NacksReceived uint64 // nacks received for them
	Relayed       uint64 // indirect probes run for other members
	NacksSent     uint64 // of those, answered with a nack
	Suspected     uint64 // members this node accused after a failed probe
	Refuted       uint64 // accusations of this node that it refuted
	Declared      uint64 // suspects this node's own timer declared dead
	Reconnects    uint64 // pings sent to dead and left members
	PushPulls     uint64 // member-list exchanges started (joins excluded)
	JoinsRefused  uint64 // joins and push-pulls refused for incompatible settings
	Reaped        uint64 // dead or left members forgotten
	// MembersRefused counts new members refused because the view was full
	// (MaxMembers), MembersLimited those refused beyond their sender's
	// MaxNewMembersPerSecond.
	MembersRefused uint64
	MembersLimited uint64
	// MembersHeld counts members learned second-hand and held back before
	// being relayed (Config.RelayDelay). ForgottenQuarantined counts
	// unconfirmed members forgotten because every member that vouched for
	// them was quarantined, ForgottenUnanswered those forgotten because
	// they did not answer a probe (vouch.go).
	MembersHeld          uint64
	ForgottenQuarantined uint64
	ForgottenUnanswered  uint64
	// SuspectChecks counts the probes of suspects this node did not accuse
	// itself, sent before declaring them dead (checkSuspect).
	SuspectChecks uint64
	// Health is the current local health score, 0 (healthy) to
	// MaxLocalHealth.
	Health int
}

// SendFunc hands a message to the caller for delivery to a gossip address.
// The membership layer sets the body, and sometimes a piggybacked update;
// the caller fills the envelope's sender fields and may piggyback further
// updates.
type SendFunc func(addr string, env *wire.Envelope)

// probe is this node's probe of one member in the current period.
type probe struct {
	target   string
	seq      uint64
	timeout  time.Time // direct ack deadline: then ping-req
	end      time.Time // end of the period: then the probe has failed
	indirect bool      // ping-reqs sent
	expected int       // nacks expected
	nacks    int
}

// relay is an indirect probe run for another member (SWIM §3.1).
type relay struct {
	seq     uint64 // our ping's seq
	reqSeq  uint64 // the requester's seq
	reqAddr string
	nackAt  time.Time
}

// maxRelays bounds the indirect probes run at once for others, so that a
// flood of ping-reqs cannot grow the state without bound.
const maxRelays = 256

// suspicion is a suspect's timer (Lifeguard, "Local Health Aware
// Suspicion"): it runs from the time this node learned of the suspicion,
// and its length falls from max to min with the log of the number of
// independent confirmations.
type suspicion struct {
	start    time.Time
	min, max time.Duration
	k        int
	accusers []string // distinct accusers, the first one included
	// direct are the accusers that made their accusation to this node
	// themselves, as opposed to relays of it: they are the ones blamed
	// if the suspect refutes.
	direct   []string
	deadline time.Time
	// checked is set once this node, which did not accuse the suspect
	// itself, has probed it before declaring it dead (see checkSuspect).
	checked bool
}

// firstHand notes that accuser made its accusation itself, if sender is
// the accuser.
func (s *suspicion) firstHand(accuser, sender string) {
	if accuser != "" && accuser == sender && !slices.Contains(s.direct, accuser) && len(s.direct) < 8 {
		s.direct = append(s.direct, accuser)
	}
}

func (s *suspicion) confirm(from string) bool {
	if from == "" || slices.Contains(s.accusers, from) {
		return false
	}
	s.accusers = append(s.accusers, from)
	d := s.start.Add(suspicionTimeout(s.min, s.max, len(s.accusers)-1, s.k))
	if !s.checked || d.After(s.deadline) {
		s.deadline = d // a check under way keeps its time for the answer
	}
	return true
}

// suspicionTimeout is Lifeguard's dynamic suspicion timeout:
// max(min, max - (max-min) * log(c+1)/log(k+1)) after c confirmations of K
// expected.
func suspicionTimeout(lo, hi time.Duration, c, k int) time.Duration {
	if k < 1 || c >= k || hi <= lo {
		return lo
	}
	frac := math.Log(float64(c)+1) / math.Log(float64(k)+1)
	return max(lo, hi-time.Duration(frac*float64(hi-lo)))
}

// Membership is the view and the failure detector. It is not safe for
// concurrent use.
type Membership struct {
	sign    func(u *wire.Member) // SetSigner: signs this node's claims; nil: unsigned
	cfg     Config
	self    Member
	members map[string]*Member
	names   []string // sorted names of members other than self, for determinism
	rng     *rand.Rand
	send    SendFunc

	order     []string // probe order for the current round
	next      int
	nextProbe time.Time
	seq       uint64
	probe     *probe
	relays    []relay
	health    int

	nextGossip time.Time

	suspicions    map[string]*suspicion
	down          map[string]bool // dead or left members, for reconnects and reaping
	timersDirty   bool            // suspicions or down changed: recompute the two below
	suspicionAt   time.Time       // earliest suspicion deadline, zero if none
	reapAt        time.Time       // earliest reap time, zero if none
	nextReconnect time.Time

	queue  broadcastQueue
	queued map[string]*broadcast
	bseq   uint64
	events []Event
	stats  Stats

	settings     *wire.Settings // what peers must share; nil: not checked
	seeds        []string       // join targets given by the operator
	known        []string       // addresses remembered from an earlier run
	joinDone     bool           // a join or push-pull was answered
	joinAt       time.Time
	joinBackoff  time.Duration
	joinAttempts int
	joinErr      string
	joinErrTry   int // the attempt joinErr was reported in
	syncAt       time.Time
	wallOffset   time.Duration // wall clock minus timer clock (see SetWallOffset)
	clockAt      time.Time     // when the last clock sample was taken
	clockProbeAt time.Time     // no early probe for a clock sample before this
	steppedWall  time.Time     // wall clock when it was last seen to step
	fastSyncs    int           // fast push-pulls left after a join
	agreed       int           // fast push-pulls in a row that found the views equal

	leaveSeqs map[uint64]bool
	left      bool

	adm  admission    // caps on new members (limits.go)
	held []heldMember // unconfirmed members waiting to be relayed, oldest first (vouch.go)
	// forgotten are the members forgotten lately, with forgottenOrder
	// their names, oldest first (vouch.go).
	forgotten      map[string]forgottenMember
	forgottenOrder []string

	// offence, if set, is told of what peers do that does not check out:
	// member floods and accusations refuted by their target.
	offence OffenceFunc
	// doubtDeaths takes a death claim about a live member, from anyone
	// but this node's own suspicion timer, as a suspicion by its sender.
	doubtDeaths bool
	revoked     map[string]bool // revoked member names (revoke.go)
}

// OffenceFunc is told that peer committed an offence of the given kind
// (see package trust for the kinds).
type OffenceFunc func(now time.Time, peer, kind string)

// Offence kinds this package reports; the same strings as package trust's.
const (
	OffenceMemberFlood       = "member_flood"
	OffenceRefutedAccusation = "refuted_accusation"
)

// SetDefences installs the offence reporter and sets whether death claims
// are doubted. With doubt on, a death claim about a member this node holds
// alive or suspect, received from another node, is taken as a suspicion
// whose accuser is the sender: the member gets the suspicion timeout to
// refute, and only this node's own timer declares it dead. A faulty node
// that claims deaths then causes suspicions, which their targets refute,
// and no false death; a real death is declared by every node's own timer,
// started when the suspicion or the claim reached it.
func (m *Membership) SetDefences(offence OffenceFunc, doubtDeaths bool) {
	m.offence, m.doubtDeaths = offence, doubtDeaths
}

// SetQuarantined marks a member as quarantined or not. A quarantined
// member keeps its state in the view but is never chosen as a partner: it
// is not probed (so this node never suspects it on its own evidence, its
// silence being ours), not asked to probe others, not sent gossip, and not
// returned by LivePeers, HeardPeers or Sample. Others' claims about it
// still apply; its own accusations do not, even relayed by others, and
// the suspicions only it and other quarantined members made are dropped
// (the suspect is alive again in this view; if it really failed, this
// node's own probes will find out).
func (m *Membership) SetQuarantined(now time.Time, name string, q bool) {
	p, ok := m.members[name]
	if !ok || p.Quarantined == q {
		return
	}
	p.Quarantined = q
	if !q {
		return
	}
	for _, n := range m.sortedNames(m.suspicions) {
		s := m.suspicions[n]
		if len(s.accusers) == 0 || slices.ContainsFunc(s.accusers, func(a string) bool {
			acc, ok := m.members[a]
			return !ok || !acc.Quarantined
		}) {
			continue
		}
		delete(m.suspicions, n)
		t := m.members[n]
		if t.State == wire.State_SUSPECT {
			t.State, t.Since = wire.State_ALIVE, now
			m.events = append(m.events, Event{Member: *t, Prev: wire.State_SUSPECT})
		}
		m.timersDirty = true
	}
	m.forgetVouchedBy(now, name)
}

// accusedByQuarantined reports whether u is a suspicion or death claim
// made by a quarantined member.
func (m *Membership) accusedByQuarantined(u *wire.Member) bool {
	if u.From == "" || (u.State != wire.State_SUSPECT && u.State != wire.State_DEAD) {
		return false
	}
	a, ok := m.members[u.From]
	return ok && a.Quarantined
}

func (m *Membership) report(now time.Time, peer, kind string) {
	if m.offence != nil && peer != "" && peer != m.self.Name {
		m.offence(now, peer, kind)
	}
}

// usable reports whether p may be chosen as a partner: live and not
// quarantined.
func (p *Member) usable() bool { return p.Live() && !p.Quarantined }

// New returns a view holding only self, alive at the given incarnation.
// self.Since is taken as the current time.
func New(cfg Config, self Member, rng *rand.Rand, send SendFunc) *Membership {
	self.State = wire.State_ALIVE
	m := &Membership{
		cfg: cfg, self: self, members: map[string]*Member{}, rng: rng, send: send,
		nextProbe: self.Since, suspicions: map[string]*suspicion{}, down: map[string]bool{},
		queued: map[string]*broadcast{}, nextReconnect: self.Since.Add(cfg.ReconnectInterval),
	}
	if cfg.PushPullInterval > 0 {
		m.syncAt = self.Since.Add(jitter(rng, 2*cfg.PushPullInterval))
	}
	// Announce ourselves: after a restart this alive update, at a higher
	// incarnation, overrides whatever the cluster last believed about us.
	m.enqueue(self.toWire())
	return m
}

// Self returns this node's own entry.
func (m *Membership) Self() Member { return m.self }

// Get returns the member with the given name.
func (m *Membership) Get(name string) (Member, bool) {
	if name == m.self.Name {
		return m.self, true
	}
	p, ok := m.members[name]
	if !ok {
		return Member{}, false
	}
	return *p, true
}

// Members returns every member known, self included, sorted by name.
func (m *Membership) Members() []Member {
	out := make([]Member, 0, len(m.members)+1)
	out = append(out, m.self)
	for _, n := range m.names {
		out = append(out, *m.members[n])
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// LivePeers returns the names of the alive and suspect members other than
// self and the quarantined, sorted.
func (m *Membership) LivePeers() []string {
	out := make([]string, 0, len(m.names))
	for _, n := range m.names {
		if m.members[n].usable() {
			out = append(out, n)
		}
	}
	return out
}

// HeardPeers returns the live members, sorted, that this node has heard
// from directly. When more members are live than direct mail may reach,
// the engine counts and mails only these: members known only by others'
// news may be fakes that a faulty or hostile member gossiped (they never
// answer, and are soon suspected), and must not push the count past the
// direct-mail limit. A real new member is heard from within a probe round,
// or at once when it joins through this node.
func (m *Membership) HeardPeers() []string {
	out := make([]string, 0, len(m.names))
	for _, n := range m.names {
		if p := m.members[n]; p.usable() && p.Heard {
			out = append(out, n)
		}
	}
	return out
}

// Sample returns up to k distinct live peers (alive or suspect, not self,
// not quarantined) drawn uniformly at random. With the defences on (see
// SetDefences) it draws among the members heard from directly first, and
// tops up with the others only when there are fewer than k of those: a
// flood of invented members, which are never heard from, cannot take the
// rumors and exchanges meant for real peers. While most known members are live it draws
// names at random and skips the others, so a gossip round costs O(k), not
// O(n); when most are dead or left, or k is close to their number, it
// lists the live ones and draws from the list.
func (m *Membership) Sample(rng *rand.Rand, k int) []string {
	live := len(m.names) - len(m.down)
	if k <= 0 || live <= 0 {
		return nil
	}
	if m.doubtDeaths {
		return m.sampleHeard(rng, k, live)
	}
	if 4*k < live && 2*live >= len(m.names) {
		out := make([]string, 0, k)
		for range 8*k + 16 {
			n := m.names[rng.IntN(len(m.names))]
			if m.members[n].usable() && !slices.Contains(out, n) {
				out = append(out, n)
				if len(out) == k {
					return out
				}
			}
		}
	}
	peers := m.LivePeers()
	if k >= len(peers) {
		return peers
	}
	for i := range k {
		j := i + rng.IntN(len(peers)-i)
		peers[i], peers[j] = peers[j], peers[i]
	}
	return slices.Clip(peers[:k])
}

// maxListedSample bounds the views sampleHeard lists in full when its
// random draws find too few members heard from.
const maxListedSample = 256

// sampleHeard is Sample preferring the members heard from directly.
func (m *Membership) sampleHeard(rng *rand.Rand, k, live int) []string {
	out := make([]string, 0, k)
	if 4*k < live && 2*live >= len(m.names) {
		for range 32*k + 64 {
			n := m.names[rng.IntN(len(m.names))]
			if p := m.members[n]; p.usable() && p.Heard && !slices.Contains(out, n) {
				out = append(out, n)
				if len(out) == k {
					return out
				}
			}
		}
		if len(m.names) > maxListedSample {
			// A large view where few members were heard from yet (a
			// node that just joined, or a flood): listing it at every
			// round would cost O(n) each time, so the preference is
			// best effort there, topped up by uniform draws.
			for range 8*k + 16 {
				n := m.names[rng.IntN(len(m.names))]
				if m.members[n].usable() && !slices.Contains(out, n) {
					out = append(out, n)
					if len(out) == k {
						return out
					}
				}
			}
		}
		out = out[:0]
	}
	var heard, other []string
	for _, n := range m.names {
		if p := m.members[n]; p.usable() {
			if p.Heard {
				heard = append(heard, n)
			} else {
				other = append(other, n)
			}
		}
	}
	draw := func(from []string, k int) []string {
		if k >= len(from) {
			return from
		}
		for i := range k {
			j := i + rng.IntN(len(from)-i)
			from[i], from[j] = from[j], from[i]
		}
		return from[:k]
	}
	out = append(out, draw(heard, k)...)
	if len(out) < k {
		out = append(out, draw(other, k-len(out))...)
	}
	return slices.Clip(out)
}

// NumLive returns the number of live members, self included.
func (m *Membership) NumLive() int { return len(m.names) - len(m.down) + 1 }

// Health returns the local health score: 0 when this node keeps up, up to
// MaxLocalHealth when its probes fail without the nacks that healthy
// helpers would have sent, which says the fault is likely its own.
func (m *Membership) Health() int { return m.health }

// Stats returns the counters.
func (m *Membership) Stats() Stats {
	s := m.stats
	s.Health = m.health
	return s
}

// Events returns and clears the state changes seen since the last call.
func (m *Membership) Events() []Event {
	ev := m.events
	m.events = nil
	return ev
}

// Leave marks self as left and announces it directly to every live member
// with a ping; LeaveAcked tells how many have answered.
func (m *Membership) Leave(now time.Time) {
	m.left = true
	m.probe = nil
	m.self.Incarnation++
	m.self.State = wire.State_LEFT
	m.self.Since = now
	m.signSelf()
	m.enqueue(m.self.toWire())
	m.leaveSeqs = map[uint64]bool{}
	for _, n := range m.LivePeers() {
		m.seq++
		m.leaveSeqs[m.seq] = false
		p := m.members[n]
		m.send(p.Addr, &wire.Envelope{Body: &wire.Envelope_Ping{Ping: &wire.Ping{Seq: m.seq, Target: p.Name}}})
	}
}

// LeaveAcked returns how many of the leave announcements were acknowledged,
// and how many were sent.
func (m *Membership) LeaveAcked() (acked, sent int) {
	for _, ok := range m.leaveSeqs {
		if ok {
			acked++
		}
	}
	return acked, len(m.leaveSeqs)
}

// scale stretches a probe timer by the local health multiplier (Lifeguard,
// "Local Health Aware Probe").
func (m *Membership) scale(d time.Duration) time.Duration { return d * time.Duration(m.health+1) }

func (m *Membership) addHealth(delta int) {
	m.health = min(max(m.health+delta, 0), m.cfg.MaxLocalHealth)
}

// Deadline returns the next time Tick has work to do.
func (m *Membership) Deadline() time.Time {
	d := m.nextProbe
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	if m.joining() {
		earlier(m.joinAt)
	}
	if m.left {
		return d
	}
	if p := m.probe; p != nil {
		if !p.indirect {
			earlier(p.timeout)
		}
		earlier(p.end)
	}
	for _, r := range m.relays {
		earlier(r.nackAt)
	}
	m.refreshTimers()
	earlier(m.suspicionAt)
	earlier(m.reapAt)
	earlier(m.heldDeadline())
	if m.cfg.ReconnectInterval > 0 && len(m.down) > 0 {
		earlier(m.nextReconnect)
	}
	if !m.syncAt.IsZero() && m.cfg.PushPullInterval > 0 {
		earlier(m.syncAt)
	}
	if m.cfg.GossipNodes > 0 && len(m.queue) > 0 {
		earlier(m.nextGossip)
	}
	return d
}

// refreshTimers recomputes the earliest suspicion and reap deadlines after
// a change; the minimum does not depend on map order.
func (m *Membership) refreshTimers() {
	if !m.timersDirty {
		return
	}
	m.timersDirty = false
	m.suspicionAt, m.reapAt = time.Time{}, time.Time{}
	for _, s := range m.suspicions {
		if m.suspicionAt.IsZero() || s.deadline.Before(m.suspicionAt) {
			m.suspicionAt = s.deadline
		}
	}
	if m.cfg.ReapTimeout > 0 {
		for n := range m.down {
			if m.revoked[n] {
				continue // never reaped
			}
			if t := m.members[n].Since.Add(m.cfg.ReapTimeout); m.reapAt.IsZero() || t.Before(m.reapAt) {
				m.reapAt = t
			}
		}
	}
}

// Tick runs the timers: probe and relay timeouts, suspicion timeouts,
// reaping, reconnects, the next probe and join retries.
func (m *Membership) Tick(now time.Time) {
	m.tickJoin(now)
	if m.left {
		if !now.Before(m.nextProbe) {
			m.nextProbe = now.Add(m.cfg.ProbeInterval)
		}
		return
	}
	m.tickRelays(now)
	m.tickHeld(now)
	if p := m.probe; p != nil {
		if !p.indirect && !now.Before(p.timeout) {
			m.pingReq(now, p)
		}
		if !now.Before(p.end) {
			m.probeFailed(now, p)
		}
	}
	m.refreshTimers()
	if !m.suspicionAt.IsZero() && !now.Before(m.suspicionAt) {
		for _, n := range m.sortedNames(m.suspicions) {
			s := m.suspicions[n]
			if now.Before(s.deadline) {
				continue
			}
			p := m.members[n]
			if m.checkSuspect(now, p, s) {
				continue
			}
			m.stats.Declared++
			// SWIM §4.2: a suspect not refuted in time is declared dead, at
			// the incarnation it was suspected at.
			m.apply(now, m.signed(&wire.Member{Name: p.Name, Address: p.Addr, NodeId: p.NodeID, Incarnation: p.Incarnation, State: wire.State_DEAD, From: m.self.Name}))
		}
	}
	m.refreshTimers()
	if !m.reapAt.IsZero() && !now.Before(m.reapAt) {
		m.reap(now)
	}
	if m.cfg.ReconnectInterval > 0 && !now.Before(m.nextReconnect) {
		m.nextReconnect = now.Add(m.cfg.ReconnectInterval)
		m.reconnect(now)
	}
	if m.probe == nil && !now.Before(m.nextProbe) {
		m.startProbe(now)
	} else if m.probe == nil && m.needClock(now) && !now.Before(m.clockProbeAt) {
		// At most one early probe per probe timeout, answered or not.
		m.clockProbeAt = now.Add(m.cfg.ProbeTimeout)
		m.startProbe(now)
	}
	m.tickSync(now)
	if m.cfg.GossipNodes > 0 && len(m.queue) > 0 && !now.Before(m.nextGossip) {
		m.nextGossip = now.Add(m.cfg.GossipInterval)
		m.gossip()
	}
}

// gossip sends queued updates to a few random live members on messages of
// their own (SWIM §4.1 infection-style dissemination, at a pace of its
// own, as memberlist does).
func (m *Membership) gossip() {
	var to []string
	for range 4 * m.cfg.GossipNodes {
		if len(to) == m.cfg.GossipNodes || len(m.names) == 0 {
			break
		}
		n := m.names[m.rng.IntN(len(m.names))]
		if m.members[n].usable() && !slices.Contains(to, n) {
			to = append(to, n)
		}
	}
	for _, n := range to {
		if len(m.queue) == 0 {
			return
		}
		m.send(m.members[n].Addr, &wire.Envelope{})
	}
}

func (m *Membership) sortedNames(set map[string]*suspicion) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// startProbe pings the next member in a shuffled round-robin order, which
// bounds the time until every member is probed (SWIM §4.3).
func (m *Membership) startProbe(now time.Time) {
	period := m.scale(m.cfg.ProbeInterval)
	m.nextProbe = now.Add(period)
	for range 2 {
		for m.next < len(m.order) {
			name := m.order[m.next]
			m.next++
			p, ok := m.members[name]
			if !ok || !p.usable() {
				continue
			}
			m.seq++
			m.probe = &probe{target: name, seq: m.seq, timeout: now.Add(m.scale(m.cfg.ProbeTimeout)), end: now.Add(period)}
			// Every probe and ack carries the sender's own entry: a member
			// that missed a refutation among the piggybacked news learns
			// it from the refuter itself at the next probe either way.
			env := &wire.Envelope{
				Members: []*wire.Member{m.self.toWire()},
				Body:    &wire.Envelope_Ping{Ping: &wire.Ping{Seq: m.seq, Target: name, SentUs: m.wall(now).UnixMicro()}},
			}
			if p.State == wire.State_SUSPECT {
				// Lifeguard's buddy system: the suspect learns of the
				// suspicion from the probe itself and can refute at once.
				env.Members = append(env.Members, m.suspectUpdate(p))
			}
			m.stats.Probes++
			m.send(p.Addr, env)
			return
		}
		m.order = m.LivePeers()
		m.rng.Shuffle(len(m.order), func(i, j int) { m.order[i], m.order[j] = m.order[j], m.order[i] })
		m.next = 0
	}
}

func (m *Membership) suspectUpdate(p *Member) *wire.Member {
	u := p.toWire()
	if s := m.suspicions[p.Name]; s != nil && len(s.accusers) > 0 && len(u.Sig) == 0 {
		u.From = s.accusers[0]
	}
	return u
}

// pingReq asks k random alive members to probe the target for us (SWIM
// §3.1). Each answers with the target's ack or, failing that, a nack.
func (m *Membership) pingReq(now time.Time, p *probe) {
	p.indirect = true
	t, ok := m.members[p.target]
	if !ok || m.cfg.IndirectChecks <= 0 {
		return
	}
	var helpers []string
	for _, n := range m.names {
		if h := m.members[n]; n != p.target && h.State == wire.State_ALIVE && !h.Quarantined {
			helpers = append(helpers, n)
		}
	}
	k := min(m.cfg.IndirectChecks, len(helpers))
	for i := range k {
		j := i + m.rng.IntN(len(helpers)-i)
		helpers[i], helpers[j] = helpers[j], helpers[i]
		h := m.members[helpers[i]]
		m.stats.PingReqs++
		m.send(h.Addr, &wire.Envelope{Body: &wire.Envelope_PingReq{PingReq: &wire.PingReq{Seq: p.seq, Target: t.Name, TargetAddress: t.Addr}}})
	}
	p.expected = k
}

// probeFailed ends a probe that got no ack at all: the target becomes
// suspect, and the local health score rises by the nacks that did not come
// (or by one without helpers): healthy helpers would have sent them, so
// their absence says the fault may be ours (Lifeguard, "Local Health Aware
// Probe").
func (m *Membership) probeFailed(now time.Time, p *probe) {
	m.probe = nil
	m.stats.ProbesFailed++
	if p.expected > 0 {
		m.addHealth(p.expected - p.nacks)
	} else {
		m.addHealth(1)
	}
	t, ok := m.members[p.target]
	if !ok || !t.Live() || m.forgetUnanswered(now, t) {
		return
	}
	m.stats.Suspected++
	m.apply(now, m.signed(&wire.Member{Name: t.Name, Address: t.Addr, NodeId: t.NodeID, Incarnation: t.Incarnation, State: wire.State_SUSPECT, From: m.self.Name}))
}

func (m *Membership) tickRelays(now time.Time) {
	keep := m.relays[:0]
	for _, r := range m.relays {
		if now.Before(r.nackAt) {
			keep = append(keep, r)
			continue
		}
		m.stats.NacksSent++
		m.send(r.reqAddr, &wire.Envelope{Body: &wire.Envelope_Nack{Nack: &wire.Nack{Seq: r.reqSeq}}})
	}
	m.relays = keep
}

// reconnect pings one dead or left member at random with the news of its
// state: if it was only cut off (a partition), it refutes its death; if it
// left and has started again, it answers at a higher incarnation. Either
// way its alive update brings it back into everyone's view. A member that
// is really gone stays silent until it is reaped.
func (m *Membership) reconnect(now time.Time) {
	var dead []string
	for n := range m.down {
		if !m.revoked[n] {
			dead = append(dead, n)
		}
	}
	if len(dead) == 0 {
		return
	}
	slices.Sort(dead)
	p := m.members[dead[m.rng.IntN(len(dead))]]
	m.seq++
	m.stats.Reconnects++
	m.send(p.Addr, &wire.Envelope{
		Members: []*wire.Member{p.toWire()},
		Body:    &wire.Envelope_Ping{Ping: &wire.Ping{Seq: m.seq, Target: p.Name, SentUs: m.wall(now).UnixMicro()}},
	})
}

// reap forgets dead and left members whose time is up. Updates about an
// unknown member that is dead or left are ignored (see apply), so a reaped
// member stays forgotten until it announces itself alive, at any
// incarnation.
func (m *Membership) reap(now time.Time) {
	var gone []string
	for n := range m.down {
		if !m.revoked[n] && !now.Before(m.members[n].Since.Add(m.cfg.ReapTimeout)) {
			gone = append(gone, n)
		}
	}
	slices.Sort(gone)
	for _, n := range gone {
		p := m.members[n]
		delete(m.members, n)
		delete(m.down, n)
		if i, ok := slices.BinarySearch(m.names, n); ok {
			m.names = slices.Delete(m.names, i, i+1)
		}
		m.stats.Reaped++
		m.events = append(m.events, Event{Member: *p, Prev: p.State, Removed: true})
	}
	m.timersDirty = true
}

// Handle processes the membership side of a received envelope: the sender's
// own liveness, piggybacked updates, and Ping, Ack, PingReq, Nack, Join and
// JoinReply bodies. It reports whether the body was a membership message.
func (m *Membership) Handle(now time.Time, env *wire.Envelope) (bool, error) {
	// A join or push-pull from a member with other cluster-wide settings is
	// refused before anything in it is believed.
	if err := m.checkJoin(env); err != nil {
		return true, err
	}
	m.adm.sender = env.From
	defer func() { m.adm.sender = "" }()
	if env.From != "" && env.From != m.self.Name {
		if _, ok := m.members[env.From]; !ok && env.FromAddr != "" {
			// A message from a member we have never heard of: it is evidently
			// alive. Add it at incarnation 0; its own alive updates will
			// raise that.
			m.apply(now, &wire.Member{Name: env.From, Address: env.FromAddr, NodeId: env.FromId, State: wire.State_ALIVE})
		}
	}
	for _, u := range env.Members {
		m.apply(now, u)
	}
	if p, ok := m.members[env.From]; ok && p.Live() && !p.Heard {
		m.heardFrom(p)
	}
	switch b := env.Body.(type) {
	case *wire.Envelope_Ping:
		if b.Ping.Target != "" && b.Ping.Target != m.self.Name {
			return true, nil // meant for a member that used to have our address
		}
		if addr := m.addrOf(env); addr != "" {
			ack := &wire.Envelope{
				Members: []*wire.Member{m.self.toWire()},
				Body:    &wire.Envelope_Ack{Ack: &wire.Ack{Seq: b.Ping.Seq, PingSentUs: b.Ping.SentUs, ClockUs: m.wall(now).UnixMicro()}},
			}
			if p, ok := m.members[env.From]; ok && (p.State == wire.State_SUSPECT || p.State == wire.State_DEAD) {
				// The sender is evidently running, but we believe otherwise:
				// tell it, so that it refutes.
				ack.Members = append(ack.Members, m.suspectUpdate(p))
			}
			m.send(addr, ack)
		}
	case *wire.Envelope_Ack:
		m.observeClock(now, env.From, b.Ack.PingSentUs, b.Ack.ClockUs)
		if p := m.probe; p != nil && p.seq == b.Ack.Seq {
			if !p.indirect {
				m.addHealth(-1)
			}
			m.probe = nil
		}
		for i, r := range m.relays {
			if r.seq == b.Ack.Seq {
				m.send(r.reqAddr, &wire.Envelope{Body: &wire.Envelope_Ack{Ack: &wire.Ack{Seq: r.reqSeq}}})
				m.relays = slices.Delete(m.relays, i, i+1)
				break
			}
		}
		if _, ok := m.leaveSeqs[b.Ack.Seq]; ok {
			m.leaveSeqs[b.Ack.Seq] = true
		}
	case *wire.Envelope_PingReq:
		m.relay(now, env, b.PingReq)
	case *wire.Envelope_Nack:
		if p := m.probe; p != nil && p.seq == b.Nack.Seq && p.nacks < p.expected {
			p.nacks++
			m.stats.NacksReceived++
		}
	case *wire.Envelope_Join:
		m.handleJoin(now, env, b.Join)
	case *wire.Envelope_JoinReply:
		m.observeClock(now, env.From, b.JoinReply.JoinSentUs, b.JoinReply.ClockUs)
		m.handleJoinReply(now, b.JoinReply)
	default:
		return false, nil
	}
	return true, nil
}

// relay runs an indirect probe for the sender of a ping-req: ping the
// target, forward its ack, or send a nack if it stays silent for most of a
// probe timeout (Lifeguard).
func (m *Membership) relay(now time.Time, env *wire.Envelope, req *wire.PingReq) {
	reqAddr := m.addrOf(env)
	if reqAddr == "" || req.Target == "" || req.Target == m.self.Name || m.left || len(m.relays) >= maxRelays {
		return
	}
	addr := req.TargetAddress
	if p, ok := m.members[req.Target]; ok && p.Addr != "" {
		addr = p.Addr
	}
	if addr == "" {
		return
	}
	m.seq++
	m.stats.Relayed++
	m.relays = append(m.relays, relay{seq: m.seq, reqSeq: req.Seq, reqAddr: reqAddr, nackAt: now.Add(m.cfg.ProbeTimeout * 4 / 5)})
	m.send(addr, &wire.Envelope{Body: &wire.Envelope_Ping{Ping: &wire.Ping{Seq: m.seq, Target: req.Target, SentUs: m.wall(now).UnixMicro()}}})
}

func (m *Membership) addrOf(env *wire.Envelope) string {
	if p, ok := m.members[env.From]; ok && p.Addr != "" {
		return p.Addr
	}
	return env.FromAddr
}

// apply merges one membership update by SWIM's ordering (§4.2): a higher
// incarnation wins; at the same incarnation suspect overrides alive, and
// dead or left override both. An update that accuses this node is refuted by
// raising its incarnation. A suspicion of a suspect at the same incarnation
// from a new accuser is a confirmation (Lifeguard).
func (m *Membership) apply(now time.Time, u *wire.Member) {
	if u.Name == "" {
		return
	}
	if u.Name == m.self.Name {
		m.applySelf(u)
		return
	}
	if m.revoked[u.Name] {
		return // a revoked member stays expelled, whatever anyone says
	}
	if m.accusedByQuarantined(u) {
		return
	}
	p, known := m.members[u.Name]
	if !known {
		if u.State == wire.State_DEAD || u.State == wire.State_LEFT {
			// Old news of a member we never knew or already reaped.
			return
		}
		if m.wasForgotten(now, u) {
			return
		}
		if !m.admit(now, u) {
			return
		}
		nm := &Member{Name: u.Name, Addr: u.Address, NodeID: u.NodeId, Incarnation: u.Incarnation, State: u.State, Since: now, From: u.From, Sig: u.Sig}
		held := m.learnedSecondHand(now, nm)
		m.members[u.Name] = nm
		i, _ := slices.BinarySearch(m.names, u.Name)
		m.names = slices.Insert(m.names, i, u.Name)
		// SWIM §4.3: a new member goes at a random place in the rest of the
		// current round, so it is probed within this round or the next.
		j := m.next + m.rng.IntN(len(m.order)-m.next+1)
		m.order = slices.Insert(m.order, j, u.Name)
		if u.State == wire.State_SUSPECT {
			m.startSuspicion(now, u.Name, u.From)
		}
		m.events = append(m.events, Event{Member: *nm, Prev: u.State, Joined: true})
		if !held {
			m.enqueue(u)
		}
		return
	}
	m.vouchedAgain(p)
	if m.doubtDeaths && u.State == wire.State_DEAD && m.adm.sender != "" && p.Live() && u.Incarnation >= p.Incarnation {
		// A death claim from another node: a suspicion by its sender
		// until this node's own timer says otherwise (SetDefences).
		u = &wire.Member{Name: u.Name, Address: u.Address, NodeId: u.NodeId, Incarnation: u.Incarnation, State: wire.State_SUSPECT, From: m.adm.sender}
	}
	if u.State == wire.State_SUSPECT && p.State == wire.State_SUSPECT && u.Incarnation == p.Incarnation {
		if s := m.suspicions[u.Name]; s != nil && s.confirm(u.From) {
			s.firstHand(u.From, m.adm.sender)
			m.timersDirty = true
			if !p.held {
				m.enqueue(u) // spread the confirmation too
			}
		}
		return
	}
	if !overrides(u, p) {
		return
	}
	if s := m.suspicions[u.Name]; s != nil && u.State == wire.State_ALIVE && u.Incarnation > p.Incarnation {
		// The suspect refuted: those who accused it to us themselves
		// were wrong. Under loss an honest prober is wrong now and then,
		// which the weight of the offence allows for.
		for _, a := range s.direct {
			m.report(now, a, OffenceRefutedAccusation)
		}
	}
	prev := p.State
	p.Incarnation = u.Incarnation
	p.From, p.Sig = u.From, u.Sig
	if u.Address != "" {
		p.Addr = u.Address
	}
	if u.NodeId != 0 {
		p.NodeID = u.NodeId
	}
	if p.State != u.State {
		p.State = u.State
		p.Since = now
		m.events = append(m.events, Event{Member: *p, Prev: prev})
	}
	delete(m.suspicions, u.Name)
	if u.State == wire.State_SUSPECT {
		m.startSuspicion(now, u.Name, u.From)
	}
	if u.State == wire.State_DEAD || u.State == wire.State_LEFT {
		m.down[u.Name] = true
		p.Heard = false // back, it must be heard from again
	} else {
		delete(m.down, u.Name)
	}
	m.timersDirty = true
	if !p.held {
		m.enqueue(u)
	}
}

// applySelf refutes accusations: a suspect, dead or left update about this
// node at its incarnation or later, or any update at a later one (news of
// an incarnation from before a restart), makes it announce itself alive at
// a higher incarnation (SWIM §4.2). Being accused also raises the local
// health score: it hints that this node answers slowly (Lifeguard).
func (m *Membership) applySelf(u *wire.Member) {
	if m.left {
		return
	}
	accused := u.State != wire.State_ALIVE && u.Incarnation >= m.self.Incarnation
	if !accused && u.Incarnation <= m.self.Incarnation {
		return
	}
	if accused {
		m.stats.Refuted++
		m.addHealth(1)
	}
	m.self.Incarnation = u.Incarnation + 1
	m.signSelf()
	m.enqueue(m.self.toWire())
}

func (m *Membership) startSuspicion(now time.Time, name, from string) {
	// The timeout scales with log10 of the cluster size (SWIM §4.2).
	n := m.NumLive()
	lo := time.Duration(float64(m.cfg.SuspicionTimeout) * max(1, math.Log10(float64(n))))
	hi := lo * time.Duration(max(m.cfg.SuspicionMaxMult, 1))
	k := min(m.cfg.SuspicionConfirmations, n-2)
	s := &suspicion{start: now, min: lo, max: hi, k: k}
	if from != "" {
		s.accusers = append(s.accusers, from)
		s.firstHand(from, m.adm.sender)
	}
	s.deadline = now.Add(suspicionTimeout(lo, hi, 0, k))
	m.suspicions[name] = s
	m.timersDirty = true
}

// checkSuspect probes, before its suspicion timer declares it dead, a
// suspect that only others accused, and reports whether it did (the
// deadline is then put off by one protocol period, once). With the defences
// on, a suspicion is evidence only of what its accusers claim: accusers can
// lie, and a suspect that never heard of its suspicion cannot refute it. The
// probe carries the suspicion (as the buddy system does), so a live suspect
// refutes in its ack; a dead one stays silent and is declared dead a period
// later than it would have been.
func (m *Membership) checkSuspect(now time.Time, p *Member, s *suspicion) bool {
	if !m.doubtDeaths || s.checked || p.Quarantined || p.State != wire.State_SUSPECT || slices.Contains(s.accusers, m.self.Name) {
		return false
	}
	s.checked = true
	s.deadline = now.Add(m.scale(m.cfg.ProbeInterval))
	m.timersDirty = true
	m.seq++
	m.stats.SuspectChecks++
	m.send(p.Addr, &wire.Envelope{
		Members: []*wire.Member{m.self.toWire(), m.suspectUpdate(p)},
		Body:    &wire.Envelope_Ping{Ping: &wire.Ping{Seq: m.seq, Target: p.Name, SentUs: m.wall(now).UnixMicro()}},
	})
	return true
}

func overrides(u *wire.Member, p *Member) bool {
	switch u.State {
	case wire.State_ALIVE:
		return u.Incarnation > p.Incarnation
	case wire.State_SUSPECT:
		if p.State == wire.State_ALIVE {
			return u.Incarnation >= p.Incarnation
		}
		return u.Incarnation > p.Incarnation
	default: // DEAD, LEFT
		if p.State == wire.State_DEAD || p.State == wire.State_LEFT {
			return u.Incarnation > p.Incarnation
		}
		return u.Incarnation >= p.Incarnation
	}
}

// broadcast is a queued update and how often it was piggybacked.
type broadcast struct {
	update    *wire.Member
	transmits int
	id        uint64 // enqueue order: newer first among equals
	index     int
}

// broadcastQueue is a heap ordered least transmitted first, then newest
// first (as memberlist's TransmitLimitedQueue), so that fresh news, such as
// a suspicion, goes out at once however long the queue.
type broadcastQueue []*broadcast

func (q broadcastQueue) Len() int { return len(q) }
func (q broadcastQueue) Less(i, j int) bool {
	if q[i].transmits != q[j].transmits {
		return q[i].transmits < q[j].transmits
	}
	return q[i].id > q[j].id
}
func (q broadcastQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *broadcastQueue) Push(x any) {
	b := x.(*broadcast)
	b.index = len(*q)
	*q = append(*q, b)
}
func (q *broadcastQueue) Pop() any {
	old := *q
	b := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return b
}

func (m *Membership) enqueue(u *wire.Member) {
	// A newer update about the same member replaces the queued one.
	if old := m.queued[u.Name]; old != nil {
		heap.Remove(&m.queue, old.index)
	}
	m.bseq++
	b := &broadcast{update: &wire.Member{Name: u.Name, Address: u.Address, Incarnation: u.Incarnation, State: u.State, NodeId: u.NodeId, From: u.From, Sig: u.Sig}, id: m.bseq}
	m.queued[u.Name] = b
	heap.Push(&m.queue, b)
}

// dequeue drops a queued update.
func (m *Membership) dequeue(b *broadcast) {
	heap.Remove(&m.queue, b.index)
	delete(m.queued, b.update.Name)
}

// Piggyback attaches up to MaxPiggyback queued updates to env, least
// transmitted first, and retires those sent often enough (SWIM §4.1).
func (m *Membership) Piggyback(env *wire.Envelope) {
	if len(m.queue) == 0 {
		return
	}
	limit := m.cfg.RetransmitMult * int(math.Ceil(math.Log10(float64(len(m.members)+2))))
	room := m.cfg.MaxPiggyback - len(env.Members)
	var taken []*broadcast
	for range min(len(m.queue), max(room, 0)) {
		b := heap.Pop(&m.queue).(*broadcast)
		if slices.ContainsFunc(env.Members, func(u *wire.Member) bool { return u.Name == b.update.Name }) {
			taken = append(taken, b) // already carried (buddy system): not counted
			continue
		}
		env.Members = append(env.Members, b.update)
		b.transmits++
		taken = append(taken, b)
	}
	for _, b := range taken {
		if b.transmits >= limit {
			delete(m.queued, b.update.Name)
			continue
		}
		heap.Push(&m.queue, b)
	}
}

// jitter spreads d over [d/2, d) so that retries from many nodes do not
// synchronise.
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(rng.Int64N(int64(d/2)))
}

// SetSigner makes this a certificate cluster's member view: sign sets the
// signature of a claim this node makes (its own alive and left claims,
// its accusations), and the claims it forwards keep their signatures.
// The engine verifies received claims before Handle sees them.
func (m *Membership) SetSigner(sign func(u *wire.Member)) {
	m.sign = sign
	m.signSelf()
	m.enqueue(m.self.toWire())
}

// signSelf signs this node's claim about itself, at its current
// incarnation and state.
func (m *Membership) signSelf() {
	if m.sign == nil {
		return
	}
	u := &wire.Member{Name: m.self.Name, Address: m.self.Addr, Incarnation: m.self.Incarnation, State: m.self.State, NodeId: m.self.NodeID}
	m.sign(u)
	m.self.From, m.self.Sig = "", u.Sig
}

// signed signs u, a claim of this node's, in a certificate cluster.
func (m *Membership) signed(u *wire.Member) *wire.Member {
	if m.sign != nil {
		m.sign(u)
	}
	return u
}
