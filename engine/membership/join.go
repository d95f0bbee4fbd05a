package membership

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// ErrIncompatible reports a join or push-pull refused because the two
// members' cluster-wide settings differ.
var ErrIncompatible = errors.New("membership: incompatible cluster settings")

// maxRejoinTargets is how many remembered addresses one join attempt
// contacts, besides the seeds: enough that one of them is likely up, few
// enough that a restart in a large cluster is not a burst of member lists.
const maxRejoinTargets = 5

// SetSettings sets what every member must share with this one. Joins and
// push-pulls carry them, and one whose settings differ is refused on both
// sides (see CompareSettings). Nil switches the check off.
func (m *Membership) SetSettings(s *wire.Settings) { m.settings = s }

// CompareSettings returns "" when member remoteName with settings remote
// can share a cluster with member localName with settings local, and
// otherwise a message naming every setting that differs, by its agent flag,
// with each member's value (the message is read on both sides).
func CompareSettings(localName string, local *wire.Settings, remoteName string, remote *wire.Settings) string {
	if local == nil {
		return ""
	}
	if remote == nil {
		return remoteName + " sent no cluster settings (an older or foreign program)"
	}
	var diffs []string
	if local.Protocol != remote.Protocol {
		diffs = append(diffs, fmt.Sprintf("protocol version: %s %d, %s %d", localName, local.Protocol, remoteName, remote.Protocol))
	}
	if local.MaxValueSize != remote.MaxValueSize {
		diffs = append(diffs, fmt.Sprintf("max-value-size: %s %d bytes, %s %d bytes", localName, local.MaxValueSize, remoteName, remote.MaxValueSize))
	}
	if local.TombstoneGraceMs != remote.TombstoneGraceMs {
		diffs = append(diffs, fmt.Sprintf("tombstone-grace: %s %v, %s %v",
			localName, time.Duration(local.TombstoneGraceMs)*time.Millisecond, remoteName, time.Duration(remote.TombstoneGraceMs)*time.Millisecond))
	}
	if local.Signing != remote.Signing {
		diffs = append(diffs, fmt.Sprintf("signing: %s %q, %s %q", localName, local.Signing, remoteName, remote.Signing))
	}
	if len(diffs) == 0 {
		return ""
	}
	return "incompatible settings: " + strings.Join(diffs, "; ") + " (every member must use the same values)"
}

// Join starts joining through the given seed addresses: a Join goes to each
// now and again with backoff until one answers. Until then the node is not
// joined (see Joined), and JoinError says why.
func (m *Membership) Join(now time.Time, seeds []string) {
	m.seeds = slices.Clone(seeds)
	m.joinDone = false
	m.joinBackoff = m.cfg.JoinRetryMin
	m.joinAt = now
	m.joinAttempts, m.joinErr, m.joinErrTry = 0, "", 0
	m.tickJoin(now)
}

// Rejoin gives the addresses of the members this node knew before it
// restarted (kept in its data directory, as Serf's snapshot keeps them).
// Join attempts go to a few of them as well as to the seeds, so a restarted
// node finds its cluster again without a seed (or when it was the only
// seed). Without seeds they stop once any member is live in the view, and
// they do not make the node count as not joined.
func (m *Membership) Rejoin(now time.Time, addrs []string) {
	m.known = slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == "" || a == m.self.Addr })
	if m.joinBackoff == 0 {
		m.joinBackoff = m.cfg.JoinRetryMin
		m.joinAt = now
	}
}

// SetSeeds replaces the addresses that join retries go to, keeping the
// backoff: the driver calls it when the seed names resolve to new
// addresses (a DNS name behind which pods come and go).
func (m *Membership) SetSeeds(seeds []string) { m.seeds = slices.Clone(seeds) }

// Joined reports whether a seed has answered a join (or push-pull) since
// the last Join; always true when no seeds were given.
func (m *Membership) Joined() bool { return m.joinDone || len(m.seeds) == 0 }

// Answered reports whether a join or push-pull of this node was answered
// since the last Join.
func (m *Membership) Answered() bool { return m.joinDone }

// JoinError returns why the last join attempt failed: no answer, a refusal
// by the transport of the seed (its key), or incompatible settings. Empty
// once joined.
func (m *Membership) JoinError() string {
	if m.Joined() {
		return ""
	}
	return m.joinErr
}

// Refused records a refusal notice from addr: it could not authenticate
// what this node sent. While joining through addr, that is why the join
// fails. The notice is not authenticated, so it changes nothing else.
func (m *Membership) Refused(addr, reason string) {
	if m.joining() && (slices.Contains(m.seeds, addr) || slices.Contains(m.known, addr)) {
		m.setJoinErr(fmt.Sprintf("%s refused this node's messages: %s", addr, reason))
	}
}

// JoinRefused records that the member name at addr refused this node's
// join, and why (an incompatible setting or cluster).
func (m *Membership) JoinRefused(name, addr, reason string) {
	if !m.joinDone {
		m.setJoinErr(fmt.Sprintf("%s (%s) refused the join: %s", name, addr, reason))
	}
}

func (m *Membership) setJoinErr(msg string) {
	m.joinErr, m.joinErrTry = msg, m.joinAttempts
}

// joining reports whether join attempts are due: seeds given and none has
// answered, or, restarted without seeds, no member is live yet.
// Rejoining reports how many members remembered from the last run this
// node is still trying to reach, having no live member yet: it is part of
// a cluster it cannot see, so it cannot check its clock against it.
func (m *Membership) Rejoining() int {
	if m.joinDone || m.left || m.NumLive() > 1 {
		return 0
	}
	return len(m.known)
}

func (m *Membership) joining() bool {
	if m.joinDone || m.left {
		return false
	}
	return len(m.seeds) > 0 || (len(m.known) > 0 && m.NumLive() == 1)
}

func (m *Membership) tickJoin(now time.Time) {
	if !m.joining() || now.Before(m.joinAt) {
		return
	}
	if m.joinAttempts > 0 && m.joinErrTry < m.joinAttempts {
		// Nothing came back from the last attempt, not even a refusal.
		m.setJoinErr(fmt.Sprintf("no answer from %s after %d attempt(s)", describeAddrs(m.seeds, m.known), m.joinAttempts))
	}
	m.joinAttempts++
	targets := slices.Clone(m.seeds)
	known := slices.Clone(m.known)
	for i := 0; i < len(known) && i < maxRejoinTargets; i++ {
		j := i + m.rng.IntN(len(known)-i)
		known[i], known[j] = known[j], known[i]
		if !slices.Contains(targets, known[i]) {
			targets = append(targets, known[i])
		}
	}
	for _, s := range targets {
		if s != m.self.Addr {
			m.send(s, m.pushPull(now, false))
		}
	}
	m.joinAt = now.Add(jitter(m.rng, m.joinBackoff))
	m.joinBackoff = min(2*m.joinBackoff, m.cfg.JoinRetryMax)
}

func describeAddrs(seeds, known []string) string {
	var parts []string
	if len(seeds) > 0 {
		parts = append(parts, "seeds "+strings.Join(seeds, ", "))
	}
	if len(known) > 0 {
		parts = append(parts, fmt.Sprintf("%d member(s) remembered from the last run", len(known)))
	}
	return strings.Join(parts, " and ")
}

// pushPull returns a Join carrying this node's settings and whole member
// list; sync marks the periodic exchange between members.
func (m *Membership) pushPull(now time.Time, sync bool) *wire.Envelope {
	sent := m.wall(now).UnixMicro()
	m.adm.sentJoin(sent)
	return &wire.Envelope{Body: &wire.Envelope_Join{Join: &wire.Join{
		Settings: m.settings, Members: m.wireMembers(), Sync: sync, SentUs: sent,
	}}}
}

func (m *Membership) wireMembers() []*wire.Member {
	out := make([]*wire.Member, 0, len(m.names)+1)
	out = append(out, m.self.toWire())
	for _, n := range m.names {
		if p := m.members[n]; !p.held {
			out = append(out, p.toWire())
		}
	}
	return out
}

// checkJoin refuses a join, push-pull or reply whose sender's settings
// differ from this node's. A refused Join is answered with the reason, so
// both sides can say what is wrong.
func (m *Membership) checkJoin(env *wire.Envelope) error {
	switch b := env.Body.(type) {
	case *wire.Envelope_Join:
		reason := CompareSettings(m.self.Name, m.settings, env.From, b.Join.Settings)
		if reason == "" {
			return nil
		}
		m.stats.JoinsRefused++
		addr := m.addrOf(env)
		if addr != "" {
			m.send(addr, &wire.Envelope{Body: &wire.Envelope_JoinReply{JoinReply: &wire.JoinReply{Settings: m.settings, Refused: reason, Sync: b.Join.Sync}}})
		}
		return fmt.Errorf("%w: refused the join of %s (%s): %s", ErrIncompatible, env.From, addr, reason)
	case *wire.Envelope_JoinReply:
		reason := b.JoinReply.Refused
		if reason == "" {
			reason = CompareSettings(m.self.Name, m.settings, env.From, b.JoinReply.Settings)
			if reason == "" {
				return nil
			}
			m.stats.JoinsRefused++
		}
		m.JoinRefused(env.From, env.FromAddr, reason)
		return fmt.Errorf("%w: %s (%s) did not admit this node: %s", ErrIncompatible, env.From, env.FromAddr, reason)
	}
	return nil
}

// handleJoin merges the sender's member list (the push) and answers with
// this node's (the pull).
func (m *Membership) handleJoin(now time.Time, env *wire.Envelope, j *wire.Join) {
	for _, u := range j.Members {
		m.apply(now, u)
	}
	if addr := m.addrOf(env); addr != "" {
		m.send(addr, &wire.Envelope{Body: &wire.Envelope_JoinReply{JoinReply: &wire.JoinReply{
			Members: m.wireMembers(), Settings: m.settings, Sync: j.Sync, JoinSentUs: j.SentUs, ClockUs: m.wall(now).UnixMicro(),
		}}})
	}
}

// handleJoinReply merges a seed's or a peer's member list. After a join,
// and while the exchanges that follow show views that differ, the next
// push-pull comes after JoinSyncInterval rather than PushPullInterval.
func (m *Membership) handleJoinReply(now time.Time, r *wire.JoinReply) {
	before := len(m.names)
	m.adm.solicited = m.adm.answers(r.JoinSentUs)
	for _, u := range r.Members {
		m.apply(now, u)
	}
	m.adm.solicited = false
	differ := len(m.names) > before || len(r.Members) < len(m.names)+1
	switch {
	case !r.Sync:
		m.fastSyncs, m.agreed = m.cfg.JoinSyncMax, 0
	case differ:
		m.agreed = 0
	default:
		m.agreed++
	}
	m.joinDone = true
	m.joinErr = ""
	// Two views that agree may lack the same member: stop only after
	// joinSyncQuiet exchanges in a row found nothing to add (the feedback
	// counter of Demers et al. §1.4, applied to member lists).
	if m.cfg.PushPullInterval > 0 && m.fastSyncs > 0 && m.agreed < joinSyncQuiet {
		m.syncAt = now.Add(m.cfg.JoinSyncInterval)
	} else if m.agreed >= joinSyncQuiet {
		m.fastSyncs = 0
	}
}

// joinSyncQuiet is how many push-pulls in a row must find the two views
// equal before a joined node stops its fast exchanges.
const joinSyncQuiet = 3

// tickSync starts the periodic push-pull with a random live member.
func (m *Membership) tickSync(now time.Time) {
	if m.cfg.PushPullInterval <= 0 || m.syncAt.IsZero() || now.Before(m.syncAt) {
		return
	}
	m.syncAt = now.Add(jitter(m.rng, 2*pushPullScale(m.cfg.PushPullInterval, m.NumLive())))
	if m.fastSyncs > 0 {
		m.fastSyncs--
	}
	peers := m.Sample(m.rng, 1)
	if len(peers) == 0 {
		return
	}
	m.stats.PushPulls++
	m.send(m.members[peers[0]].Addr, m.pushPull(now, true))
}

// pushPullScale stretches the push-pull interval beyond 32 members by the
// log of the cluster size (memberlist's pushPullScale): a node's share of
// the exchanges stays about constant while each list grows with n.
func pushPullScale(interval time.Duration, n int) time.Duration {
	const threshold = 32
	if n <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(n))-math.Log2(threshold)) + 1
	return time.Duration(mult) * interval
}
