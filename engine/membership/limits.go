package membership

import (
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Defaults of the caps on the member view (Config.MaxMembers and
// Config.MaxNewMembersPerSecond).
const (
	// DefaultMaxMembers bounds the view at four times the largest cluster
	// the defaults are tuned for (1,000 members), so a real cluster never
	// meets it and a flood of invented members cannot fill memory.
	DefaultMaxMembers = 4096
	// DefaultMaxNewMembersPerSecond is half of the engine's default
	// direct-mail threshold (64 peers): a burst of invented members from
	// one sender cannot, by itself, make a small cluster give up direct
	// mail. Members learned from the reply to this node's own join or
	// push-pull are not limited, so joining a large cluster stays one
	// round trip.
	DefaultMaxNewMembersPerSecond = 32
	// solicitedJoins is how many of this node's recent joins and
	// push-pulls are remembered to recognise their replies.
	solicitedJoins = 16
)

// admission decides whether an update about an unknown member may add it
// to the view: the view has room (MaxMembers), and the member is first-hand
// (the update comes from the member itself), listed in the reply to one of
// this node's joins, or within its sender's allowance of new members this
// second (MaxNewMembersPerSecond).
type admission struct {
	sender    string // sender of the envelope being handled
	solicited bool   // the updates being applied answer one of our joins
	window    time.Time
	counts    map[string]int // new members admitted per sender in window
	sent      [solicitedJoins]int64
	nextSent  int
	// flooders are the senders that went over their allowance, with when
	// they last did (at most maxFlooders, oldest dropped first).
	flooders map[string]time.Time
}

// flood remembers that sender went over its allowance.
func (a *admission) flood(now time.Time, sender string) {
	if a.flooders == nil {
		a.flooders = map[string]time.Time{}
	}
	if _, ok := a.flooders[sender]; !ok && len(a.flooders) >= maxFlooders {
		oldest := ""
		for s, t := range a.flooders {
			if oldest == "" || t.Before(a.flooders[oldest]) || (t.Equal(a.flooders[oldest]) && s < oldest) {
				oldest = s
			}
		}
		delete(a.flooders, oldest)
	}
	a.flooders[sender] = now
}

// flooded reports whether sender went over its allowance less than
// floodMemory ago.
func (a *admission) flooded(now time.Time, sender string) bool {
	t, ok := a.flooders[sender]
	return ok && now.Sub(t) < floodMemory
}

func (c Config) maxMembers() int {
	if c.MaxMembers == 0 {
		return DefaultMaxMembers
	}
	return c.MaxMembers
}

func (c Config) maxNewPerSecond() int {
	if c.MaxNewMembersPerSecond == 0 {
		return DefaultMaxNewMembersPerSecond
	}
	return c.MaxNewMembersPerSecond
}

// admit reports whether u, about a member not in the view, may be added.
// Refusals are counted; the update is dropped, and a real member is
// learned again later from itself, another sender or a push-pull.
func (m *Membership) admit(now time.Time, u *wire.Member) bool {
	if limit := m.cfg.maxMembers(); limit > 0 && len(m.members)+1 >= limit {
		m.stats.MembersRefused++
		return false
	}
	a := &m.adm
	if a.solicited || a.sender == "" || a.sender == u.Name {
		return true
	}
	limit := m.cfg.maxNewPerSecond()
	if limit < 0 {
		return true
	}
	if now.Sub(a.window) >= time.Second || now.Before(a.window) || a.counts == nil {
		// A fresh window forgets every sender, so the map holds at most the
		// senders of one second.
		a.window, a.counts = now, map[string]int{}
	}
	if a.counts[a.sender] >= limit {
		m.stats.MembersLimited++
		if a.counts[a.sender] == limit {
			// Once per sender and second: a flood of invented members.
			a.counts[a.sender]++
			a.flood(now, a.sender)
			m.report(now, a.sender, OffenceMemberFlood)
		}
		return false
	}
	a.counts[a.sender]++
	return true
}

// sentJoin remembers the timestamp a Join carries, which its reply echoes.
func (a *admission) sentJoin(us int64) {
	if a.sent[(a.nextSent+solicitedJoins-1)%solicitedJoins] == us {
		return // the same join to several seeds
	}
	a.sent[a.nextSent] = us
	a.nextSent = (a.nextSent + 1) % solicitedJoins
}

// answers reports whether a JoinReply echoing us answers one of our joins.
func (a *admission) answers(us int64) bool {
	if us == 0 {
		return false
	}
	for _, s := range a.sent {
		if s == us {
			return true
		}
	}
	return false
}
