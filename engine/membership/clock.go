package membership

import (
	"slices"
	"time"
)

// ClockSample is one measurement of a member's clock against this node's,
// from a round trip (a ping and its ack, a join and its reply), as NTP
// estimates it: the member read its clock at some instant between the
// request leaving and the answer arriving, so its offset is its reading
// minus the midpoint, within half the round trip either way.
type ClockSample struct {
	// Offset is the member's clock minus this node's: positive when the
	// member's clock is ahead.
	Offset time.Duration
	// RTT is the round trip the sample was taken over; the error is at
	// most RTT/2.
	RTT time.Duration
	// At is when the sample was taken (this node's clock).
	At time.Time
}

// Measured reports whether the sample holds a measurement.
func (s ClockSample) Measured() bool { return !s.At.IsZero() }

// maxSampleRTT drops samples taken over a round trip so long that they say
// little: the bound on the error is half of it.
const maxSampleRTT = 5 * time.Second

// ClockWindow is how old a sample may be and still count towards the
// median offset: a clock that was corrected stops counting as skewed once
// its old samples age out or are replaced.
const ClockWindow = 2 * time.Minute

// SetWallOffset sets how far this node's wall clock (the time it puts in
// messages) is from the clock its timers run on, the now it is given: zero
// in a real node, whose timers run on the monotonic clock and whose wall
// clock is now's own wall reading; a simulated or fault-injected node with
// a wrong wall clock sets it, so that a clock set wrong or stepped back
// changes its timestamps without stopping its timers.
func (m *Membership) SetWallOffset(d time.Duration) { m.wallOffset = d }

// ClockStepped forgets every clock sample: this node's wall clock jumped
// (see Engine.checkClock), so what was measured against it no longer
// holds. Writes wait for a new measurement, which the next tick starts.
func (m *Membership) ClockStepped(now time.Time) {
	for _, p := range m.members {
		p.Clock = ClockSample{}
	}
	m.clockAt, m.clockProbeAt = time.Time{}, time.Time{}
	m.steppedWall = m.wall(now)
}

// wall is this node's wall clock at now.
func (m *Membership) wall(now time.Time) time.Time { return now.Add(m.wallOffset) }

// observeClock records a sample from a round trip started at sentUs (this
// node's clock, echoed back) and answered at clockUs (the peer's clock).
func (m *Membership) observeClock(now time.Time, from string, sentUs, clockUs int64) {
	p, ok := m.members[from]
	if !ok || sentUs == 0 || clockUs == 0 {
		return
	}
	sent := time.UnixMicro(sentUs)
	if sent.Before(m.steppedWall) || sent.After(m.wall(now)) {
		// Sent before the wall clock last stepped (it reads earlier than the
		// step, or, stepped back, later than now): the round trip spans the
		// step and would take part of it for an offset.
		return
	}
	rtt := m.wall(now).Sub(sent)
	if rtt < 0 || rtt > maxSampleRTT {
		return // not our clock's reading, or too old to say much
	}
	mid := sent.Add(rtt / 2)
	p.Clock = ClockSample{Offset: time.UnixMicro(clockUs).Sub(mid), RTT: rtt, At: now}
	m.clockAt = now
}

// ClockAgreement returns how many of the live members measured within
// ClockWindow have a clock within bound of this node's, and how many were
// measured. The median alone can mislead when few members are measured
// and several clocks are wrong (this node an hour ahead, one peer two
// hours ahead and one right: the median says 0); a node trusts its clock
// only when a strict majority of itself and the members it measured agree
// with it.
func (m *Membership) ClockAgreement(now time.Time, bound time.Duration) (agree, n int) {
	for _, name := range m.names {
		p := m.members[name]
		if p.Live() && p.Clock.Measured() && now.Sub(p.Clock.At) <= ClockWindow {
			n++
			if p.Clock.Offset.Abs() <= bound {
				agree++
			}
		}
	}
	return agree, n
}

// KnowsOthers reports whether this node has ever had other members, in its
// view (in any state) or remembered from its last run: a node that never
// had any has nothing to check its clock against and nobody to harm.
func (m *Membership) KnowsOthers() bool { return len(m.names) > 0 || len(m.known) > 0 }

// LastClockSample returns when the last clock sample was taken (zero if
// none since the last ClockStepped).
func (m *Membership) LastClockSample() time.Time { return m.clockAt }

// needClock reports whether this node has live peers but no recent clock
// sample: then it probes at once rather than at the next protocol period,
// since local writes wait for a measurement.
func (m *Membership) needClock(now time.Time) bool {
	return m.NumLive() > 1 && (m.clockAt.IsZero() || now.Sub(m.clockAt) > ClockWindow)
}

// ClockOffset returns this node's clock offset to the cluster, positive
// when this node is ahead, and how many peers it was judged against (0:
// none measured). It is the median of this node's clock minus each live
// member's measured within ClockWindow, this node itself counting as one
// more at 0. Counting itself, a node is judged off when a majority of the
// members it measured disagree with it: with three members and one of them
// an hour ahead, the other two see the median at 0 (the middle of 0, 0 and
// one hour), while the one ahead sees it at an hour. With an even count the
// middle value further from 0 is taken, to fail safe: of two members whose
// clocks disagree neither can tell which one is wrong, so both stop
// writing until a third measurement decides (and in a cluster of two, until
// the clock is fixed).
func (m *Membership) ClockOffset(now time.Time) (offset time.Duration, n int) {
	offs := []time.Duration{0}
	for _, name := range m.names {
		p := m.members[name]
		if p.Live() && p.Clock.Measured() && now.Sub(p.Clock.At) <= ClockWindow {
			offs = append(offs, -p.Clock.Offset)
		}
	}
	if len(offs) == 1 {
		return 0, 0
	}
	slices.Sort(offs)
	mid := len(offs) / 2
	if len(offs)%2 == 1 {
		return offs[mid], len(offs) - 1
	}
	lo, hi := offs[mid-1], offs[mid]
	if lo.Abs() > hi.Abs() {
		return lo, len(offs) - 1
	}
	return hi, len(offs) - 1
}
