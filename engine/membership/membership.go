// Package membership keeps a node's view of the cluster and detects failed
// members, in the manner of SWIM (Das, Gupta and Motivala, "SWIM: Scalable
// Weakly-consistent Infection-style Process Group Membership Protocol",
// 2002): each protocol period the node probes one member, chosen in a
// shuffled round-robin order; a member that does not answer becomes suspect,
// and a suspect that does not refute within the suspicion timeout is declared
// dead. State changes spread by piggybacking on every message the node sends,
// each retransmitted a number of times that grows with log(n).
//
// The package is pure: time and randomness come from the caller, and
// messages leave through the send function it was given.
package membership

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Config tunes failure detection and dissemination.
type Config struct {
	// ProbeInterval is the protocol period: one member is probed per period.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for an ack before the probed member
	// becomes suspect. It must exceed a round trip.
	ProbeTimeout time.Duration
	// SuspicionTimeout is how long a suspect has to refute before it is
	// declared dead.
	SuspicionTimeout time.Duration
	// RetransmitMult scales how many times each state change is piggybacked:
	// RetransmitMult * ceil(log10(n+1)) times, enough to reach every member
	// with high probability (SWIM §4.1).
	RetransmitMult int
	// MaxPiggyback caps the updates attached to one message, so that
	// small messages stay within one datagram.
	MaxPiggyback int
	// JoinRetryMin and JoinRetryMax bound the backoff between join attempts.
	JoinRetryMin, JoinRetryMax time.Duration
}

// DefaultConfig suits a LAN: failures are suspected within about a second
// and declared after five more.
func DefaultConfig() Config {
	return Config{
		ProbeInterval:    time.Second,
		ProbeTimeout:     500 * time.Millisecond,
		SuspicionTimeout: 5 * time.Second,
		RetransmitMult:   4,
		MaxPiggyback:     8,
		JoinRetryMin:     200 * time.Millisecond,
		JoinRetryMax:     10 * time.Second,
	}
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
}

// Live reports whether the member takes part in the protocol: alive or
// suspect.
func (m Member) Live() bool { return m.State == wire.State_ALIVE || m.State == wire.State_SUSPECT }

func (m Member) toWire() *wire.Member {
	return &wire.Member{Name: m.Name, Address: m.Addr, Incarnation: m.Incarnation, State: m.State, NodeId: m.NodeID}
}

// Event reports that a member changed state in this node's view.
type Event struct {
	Member Member
	// Prev is the state before the change; Joined is true when the member
	// was not known before.
	Prev   wire.State
	Joined bool
}

// SendFunc hands a message to the caller for delivery to a gossip address.
// The membership layer sets only the body; the caller fills the envelope's
// sender fields and may piggyback further updates.
type SendFunc func(addr string, env *wire.Envelope)

type broadcast struct {
	update    *wire.Member
	transmits int
}

type probe struct {
	target   string
	seq      uint64
	deadline time.Time
}

// Membership is the view and the failure detector. It is not safe for
// concurrent use.
type Membership struct {
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

	queue  []*broadcast
	events []Event

	seeds       []string
	joined      bool
	joinAt      time.Time
	joinBackoff time.Duration

	leaveSeqs map[uint64]bool
	left      bool
}

// New returns a view holding only self, alive at the given incarnation.
// self.Since is taken as the current time.
func New(cfg Config, self Member, rng *rand.Rand, send SendFunc) *Membership {
	self.State = wire.State_ALIVE
	m := &Membership{cfg: cfg, self: self, members: map[string]*Member{}, rng: rng, send: send, nextProbe: self.Since}
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
// self, sorted.
func (m *Membership) LivePeers() []string {
	out := make([]string, 0, len(m.names))
	for _, n := range m.names {
		if m.members[n].Live() {
			out = append(out, n)
		}
	}
	return out
}

// NumLive returns the number of live members, self included.
func (m *Membership) NumLive() int { return len(m.LivePeers()) + 1 }

// Joined reports whether a seed has answered a join since the last Join.
func (m *Membership) Joined() bool { return m.joined }

// Events returns and clears the state changes seen since the last call.
func (m *Membership) Events() []Event {
	ev := m.events
	m.events = nil
	return ev
}

// Join starts joining through the given seed addresses: a Join goes to each
// now and again with backoff until one answers.
func (m *Membership) Join(now time.Time, seeds []string) {
	m.seeds = slices.Clone(seeds)
	m.joined = len(seeds) == 0
	m.joinBackoff = m.cfg.JoinRetryMin
	m.joinAt = now
	m.tickJoin(now)
}

func (m *Membership) tickJoin(now time.Time) {
	if m.joined || len(m.seeds) == 0 || now.Before(m.joinAt) {
		return
	}
	for _, s := range m.seeds {
		if s == m.self.Addr {
			continue
		}
		m.send(s, &wire.Envelope{Body: &wire.Envelope_Join{Join: &wire.Join{}}})
	}
	m.joinAt = now.Add(jitter(m.rng, m.joinBackoff))
	m.joinBackoff = min(2*m.joinBackoff, m.cfg.JoinRetryMax)
}

// Leave marks self as left and announces it directly to every live member
// with a ping; LeaveAcked tells how many have answered.
func (m *Membership) Leave(now time.Time) {
	m.left = true
	m.self.Incarnation++
	m.self.State = wire.State_LEFT
	m.self.Since = now
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

// Deadline returns the next time Tick has work to do.
func (m *Membership) Deadline() time.Time {
	d := m.nextProbe
	if m.probe != nil && m.probe.deadline.Before(d) {
		d = m.probe.deadline
	}
	if !m.joined && len(m.seeds) > 0 && m.joinAt.Before(d) {
		d = m.joinAt
	}
	for _, n := range m.names {
		if p := m.members[n]; p.State == wire.State_SUSPECT {
			if t := p.Since.Add(m.cfg.SuspicionTimeout); t.Before(d) {
				d = t
			}
		}
	}
	return d
}

// Tick runs the timers: probe timeouts, suspicion timeouts, the next probe
// and join retries.
func (m *Membership) Tick(now time.Time) {
	m.tickJoin(now)
	if m.left {
		return
	}
	if m.probe != nil && !now.Before(m.probe.deadline) {
		if p, ok := m.members[m.probe.target]; ok && p.State == wire.State_ALIVE {
			m.apply(now, &wire.Member{Name: p.Name, Address: p.Addr, NodeId: p.NodeID, Incarnation: p.Incarnation, State: wire.State_SUSPECT})
		}
		m.probe = nil
	}
	for _, n := range m.names {
		p := m.members[n]
		if p.State == wire.State_SUSPECT && !now.Before(p.Since.Add(m.cfg.SuspicionTimeout)) {
			m.apply(now, &wire.Member{Name: p.Name, Address: p.Addr, NodeId: p.NodeID, Incarnation: p.Incarnation, State: wire.State_DEAD})
		}
	}
	if !now.Before(m.nextProbe) {
		m.nextProbe = now.Add(m.cfg.ProbeInterval)
		if m.probe == nil {
			m.startProbe(now)
		}
	}
}

// startProbe pings the next member in a shuffled round-robin order, which
// bounds the time until every member is probed (SWIM §4.3).
func (m *Membership) startProbe(now time.Time) {
	for range 2 {
		for m.next < len(m.order) {
			name := m.order[m.next]
			m.next++
			p, ok := m.members[name]
			if !ok || !p.Live() {
				continue
			}
			m.seq++
			m.probe = &probe{target: name, seq: m.seq, deadline: now.Add(m.cfg.ProbeTimeout)}
			m.send(p.Addr, &wire.Envelope{Body: &wire.Envelope_Ping{Ping: &wire.Ping{Seq: m.seq, Target: name}}})
			return
		}
		m.order = m.LivePeers()
		m.rng.Shuffle(len(m.order), func(i, j int) { m.order[i], m.order[j] = m.order[j], m.order[i] })
		m.next = 0
	}
}

// Handle processes the membership side of a received envelope: the sender's
// own liveness, piggybacked updates, and Ping, Ack, Join and JoinReply
// bodies. It reports whether the body was a membership message.
func (m *Membership) Handle(now time.Time, env *wire.Envelope) bool {
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
	switch b := env.Body.(type) {
	case *wire.Envelope_Ping:
		if b.Ping.Target != "" && b.Ping.Target != m.self.Name {
			return true // meant for a member that used to have our address
		}
		if addr := m.addrOf(env); addr != "" {
			m.send(addr, &wire.Envelope{Body: &wire.Envelope_Ack{Ack: &wire.Ack{Seq: b.Ping.Seq}}})
		}
	case *wire.Envelope_Ack:
		if m.probe != nil && m.probe.seq == b.Ack.Seq {
			m.probe = nil
		}
		if _, ok := m.leaveSeqs[b.Ack.Seq]; ok {
			m.leaveSeqs[b.Ack.Seq] = true
		}
	case *wire.Envelope_Join:
		if addr := m.addrOf(env); addr != "" {
			all := m.Members()
			ws := make([]*wire.Member, len(all))
			for i, x := range all {
				ws[i] = x.toWire()
			}
			m.send(addr, &wire.Envelope{Body: &wire.Envelope_JoinReply{JoinReply: &wire.JoinReply{Members: ws}}})
		}
	case *wire.Envelope_JoinReply:
		for _, u := range b.JoinReply.Members {
			m.apply(now, u)
		}
		m.joined = true
	default:
		return false
	}
	return true
}

func (m *Membership) addrOf(env *wire.Envelope) string {
	if p, ok := m.members[env.From]; ok && p.Addr != "" {
		return p.Addr
	}
	return env.FromAddr
}

// apply merges one membership update by SWIM's ordering: a higher
// incarnation wins; at the same incarnation suspect overrides alive, and
// dead or left override both. An update that accuses this node is refuted by
// raising its incarnation (SWIM §4.2).
func (m *Membership) apply(now time.Time, u *wire.Member) {
	if u.Name == "" {
		return
	}
	if u.Name == m.self.Name {
		if m.left {
			return
		}
		if u.State != wire.State_ALIVE && u.Incarnation >= m.self.Incarnation {
			m.self.Incarnation = u.Incarnation + 1
			m.enqueue(m.self.toWire())
		}
		return
	}
	p, known := m.members[u.Name]
	if !known {
		nm := &Member{Name: u.Name, Addr: u.Address, NodeID: u.NodeId, Incarnation: u.Incarnation, State: u.State, Since: now}
		m.members[u.Name] = nm
		i, _ := slices.BinarySearch(m.names, u.Name)
		m.names = slices.Insert(m.names, i, u.Name)
		m.events = append(m.events, Event{Member: *nm, Prev: u.State, Joined: true})
		m.enqueue(u)
		return
	}
	if !overrides(u, p) {
		return
	}
	prev := p.State
	p.Incarnation = u.Incarnation
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
	m.enqueue(u)
}

func overrides(u *wire.Member, p *Member) bool {
	switch u.State {
	case wire.State_ALIVE:
		return u.Incarnation > p.Incarnation
	case wire.State_SUSPECT:
		if p.State == wire.State_ALIVE {
			return u.Incarnation >= p.Incarnation
		}
		return p.State == wire.State_SUSPECT && u.Incarnation > p.Incarnation
	default: // DEAD, LEFT
		if p.State == wire.State_DEAD || p.State == wire.State_LEFT {
			return u.Incarnation > p.Incarnation
		}
		return u.Incarnation >= p.Incarnation
	}
}

func (m *Membership) enqueue(u *wire.Member) {
	// A newer update about the same member replaces the queued one.
	m.queue = slices.DeleteFunc(m.queue, func(b *broadcast) bool { return b.update.Name == u.Name })
	c := &wire.Member{Name: u.Name, Address: u.Address, Incarnation: u.Incarnation, State: u.State, NodeId: u.NodeId}
	m.queue = append(m.queue, &broadcast{update: c})
}

// Piggyback attaches up to MaxPiggyback queued updates to env, least
// transmitted first, and retires those sent often enough.
func (m *Membership) Piggyback(env *wire.Envelope) {
	if len(m.queue) == 0 {
		return
	}
	limit := m.cfg.RetransmitMult * int(math.Ceil(math.Log10(float64(len(m.members)+2))))
	slices.SortStableFunc(m.queue, func(a, b *broadcast) int { return cmp.Compare(a.transmits, b.transmits) })
	n := min(len(m.queue), m.cfg.MaxPiggyback)
	for _, b := range m.queue[:n] {
		env.Members = append(env.Members, b.update)
		b.transmits++
	}
	m.queue = slices.DeleteFunc(m.queue, func(b *broadcast) bool { return b.transmits >= limit })
}

// jitter spreads d over [d/2, d) so that retries from many nodes do not
// synchronise.
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(rng.Int64N(int64(d/2)))
}
