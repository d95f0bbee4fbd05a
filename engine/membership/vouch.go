package membership

import (
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Vouching: with the defences on (SetDefences), a node answers only for the
// members it has heard from itself. A member learned second-hand (from a
// piggybacked update or a member list, not from the member) is unconfirmed
// until it sends this node something: the node remembers who told it of the
// member (its vouchers, at most maxVouchers), and
//
//   - holds it back for Config.RelayDelay before relaying it (piggybacked
//     news, push-pull lists), so that members a flooder invented do not
//     spread through honest nodes in the seconds before it is quarantined;
//     heard from, or told of by a second member, it is relayed at once;
//   - forgets it when every member that vouched for it is quarantined:
//     what a flooder invented leaves the view when the flooder is caught,
//     not when the failure detector gets round to probing it, which in a
//     view of a thousand invented members takes many minutes;
//   - forgets it, rather than suspecting it, when a probe of it fails and
//     one of its vouchers is quarantined or flooded: a member that never
//     answered and that a flooder told of is not known to exist, and a
//     suspicion would spread it to members that never heard of it.
//
// A real member forgotten so comes back as soon as it sends this node
// anything (its probes, gossip, push-pulls) or an honest member tells of
// it again, so an honest join is slowed at most, never lost.

// DefaultRelayDelay is Config.RelayDelay's default: a flooder is
// quarantined by every honest node it floods within two to five seconds
// (two seconds over MaxNewMembersPerSecond, docs/SIMULATION.md), so the
// members it invented are forgotten before they are relayed.
const DefaultRelayDelay = 5 * time.Second

// maxVouchers bounds the vouchers remembered per unconfirmed member.
const maxVouchers = 3

// forgottenFor is how long a forgotten member is remembered as such: news
// of it from others at the same incarnation or an older one is ignored
// meanwhile, so that honest members cannot pass an invented one back and
// forth (each forgetting it at its own time) for ever. The member itself
// is heard at once. At most MaxMembers names are remembered, the oldest
// dropped first.
const forgottenFor = 10 * time.Minute

// floodMemory is how long a sender that went over its allowance of new
// members (MaxNewMembersPerSecond) is remembered as a flooder: the members
// only it vouched for are not relayed by time meanwhile.
const floodMemory = 10 * time.Minute

// maxFlooders bounds the flooders remembered; beyond it the oldest is
// dropped.
const maxFlooders = 256

// heldMember is an unconfirmed member waiting to be relayed.
type heldMember struct {
	name string
	at   time.Time // when it may be relayed
}

func (c Config) relayDelay() time.Duration {
	if c.RelayDelay == 0 {
		return DefaultRelayDelay
	}
	return max(c.RelayDelay, 0)
}

// Unconfirmed reports whether the member was learned second-hand and has
// not been heard from since (with the defences on).
func (p Member) Unconfirmed() bool { return len(p.via) > 0 }

// Vouchers returns the members that told this node of an unconfirmed
// member, the first first.
func (p Member) Vouchers() []string { return slices.Clone(p.via) }

// learnedSecondHand records, for a member just added from news of sender,
// who vouched for it and when it may be relayed. It reports whether the
// member is held back.
func (m *Membership) learnedSecondHand(now time.Time, p *Member) bool {
	s := m.adm.sender
	if !m.doubtDeaths || s == "" || s == p.Name {
		return false
	}
	p.via = []string{s}
	d := m.cfg.relayDelay()
	if d == 0 {
		return false
	}
	p.held = true
	if len(m.held) >= 2*max(m.cfg.maxMembers(), len(m.members)) {
		// Entries of members forgotten or heard since pile up under a
		// flood: keep those still held.
		m.held = slices.DeleteFunc(m.held, func(h heldMember) bool {
			q, ok := m.members[h.name]
			return !ok || !q.held
		})
	}
	m.held = append(m.held, heldMember{name: p.Name, at: now.Add(d)})
	m.stats.MembersHeld++
	return true
}

// vouchedAgain records that sender, too, told of the unconfirmed member p.
// Held back, p is relayed now: two members vouch for it, and the members a
// flooder invents reach at most the few it sends them to, which do not
// relay them.
func (m *Membership) vouchedAgain(p *Member) {
	s := m.adm.sender
	if len(p.via) == 0 || s == "" || s == p.Name || len(p.via) >= maxVouchers || slices.Contains(p.via, s) {
		return
	}
	p.via = append(p.via, s)
	m.release(p)
}

// heardFrom confirms p: a message came from it. Held back, it is relayed
// now.
func (m *Membership) heardFrom(p *Member) {
	p.Heard = true
	p.via = nil
	m.release(p)
}

// release relays a held member: its current state is queued for
// piggybacking, and push-pull lists carry it.
func (m *Membership) release(p *Member) {
	if !p.held {
		return
	}
	p.held = false
	m.enqueue(p.toWire())
}

// tickHeld relays the held members whose delay is over, but for those
// that only flooders vouched for: they wait to be heard from or vouched
// for by another member.
func (m *Membership) tickHeld(now time.Time) {
	for len(m.held) > 0 && !now.Before(m.held[0].at) {
		if p, ok := m.members[m.held[0].name]; ok && slices.ContainsFunc(p.via, func(v string) bool { return !m.adm.flooded(now, v) }) {
			m.release(p)
		}
		m.held = m.held[1:]
	}
	if len(m.held) == 0 {
		m.held = nil
	}
}

// heldDeadline is when tickHeld next has work.
func (m *Membership) heldDeadline() time.Time {
	if len(m.held) == 0 {
		return time.Time{}
	}
	return m.held[0].at
}

// forgetVouchedBy forgets the unconfirmed members that only quarantined
// members vouched for, name (just quarantined) among them.
func (m *Membership) forgetVouchedBy(now time.Time, name string) {
	var gone []string
	for _, n := range m.names {
		p := m.members[n]
		if len(p.via) == 0 || p.Heard || !slices.Contains(p.via, name) {
			continue
		}
		if slices.ContainsFunc(p.via, func(v string) bool {
			q, ok := m.members[v]
			return v != name && ok && !q.Quarantined
		}) {
			continue // an honest member vouches for it too
		}
		gone = append(gone, n)
	}
	for _, n := range gone {
		m.forget(now, n)
		m.stats.ForgottenQuarantined++
	}
}

// forget removes a member from the view without declaring anything about
// it: news of it may bring it back, as a new member.
func (m *Membership) forget(now time.Time, name string) {
	p, ok := m.members[name]
	if !ok || m.revoked[name] {
		return
	}
	m.rememberForgotten(now, p)
	delete(m.members, name)
	delete(m.down, name)
	delete(m.suspicions, name)
	if i, ok := slices.BinarySearch(m.names, name); ok {
		m.names = slices.Delete(m.names, i, i+1)
	}
	if b := m.queued[name]; b != nil {
		m.dequeue(b)
	}
	if m.probe != nil && m.probe.target == name {
		m.probe = nil
	}
	m.timersDirty = true
	p.Since = now
	m.events = append(m.events, Event{Member: *p, Prev: p.State, Removed: true})
}

// forgetUnanswered forgets p instead of suspecting it after a failed probe
// when p is unconfirmed and one of its vouchers is quarantined or went over
// its allowance of new members (see the package's vouching rules above),
// and reports whether it did. A member honest members alone vouched for is
// suspected as usual: forgotten, it would not be pinged again as a dead
// member is, and a partition between members that learned of each other
// second-hand would never heal.
func (m *Membership) forgetUnanswered(now time.Time, p *Member) bool {
	if !m.doubtDeaths || len(p.via) == 0 || p.Heard || p.State != wire.State_ALIVE {
		return false
	}
	if !slices.ContainsFunc(p.via, func(v string) bool {
		q, ok := m.members[v]
		return m.adm.flooded(now, v) || (ok && q.Quarantined)
	}) {
		return false
	}
	m.forget(now, p.Name)
	m.stats.ForgottenUnanswered++
	return true
}

// forgottenMember is a member forgotten at an incarnation.
type forgottenMember struct {
	inc uint64
	at  time.Time
}

// rememberForgotten notes that p was forgotten (see forgottenFor).
func (m *Membership) rememberForgotten(now time.Time, p *Member) {
	if m.forgotten == nil {
		m.forgotten = map[string]forgottenMember{}
	}
	if _, ok := m.forgotten[p.Name]; !ok {
		limit := m.cfg.maxMembers()
		if limit <= 0 {
			limit = DefaultMaxMembers // the view is not capped; this memory is
		}
		if len(m.forgottenOrder) >= limit {
			delete(m.forgotten, m.forgottenOrder[0])
			m.forgottenOrder = m.forgottenOrder[1:]
		}
		m.forgottenOrder = append(m.forgottenOrder, p.Name)
	}
	m.forgotten[p.Name] = forgottenMember{inc: p.Incarnation, at: now}
}

// wasForgotten reports whether u is second-hand news, no newer than what
// this node knew, of a member it forgot less than forgottenFor ago.
func (m *Membership) wasForgotten(now time.Time, u *wire.Member) bool {
	f, ok := m.forgotten[u.Name]
	if !ok {
		return false
	}
	if m.adm.sender == u.Name || u.Incarnation > f.inc || now.Sub(f.at) >= forgottenFor {
		delete(m.forgotten, u.Name) // its name stays in forgottenOrder until it comes round
		return false
	}
	return true
}
