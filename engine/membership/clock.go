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

// observeClock records a sample from a round trip started at sentUs (this
// node's clock, echoed back) and answered at clockUs (the peer's clock).
func (m *Membership) observeClock(now time.Time, from string, sentUs, clockUs int64) {
	p, ok := m.members[from]
	if !ok || sentUs == 0 || clockUs == 0 {
		return
	}
	sent := time.UnixMicro(sentUs)
	rtt := now.Sub(sent)
	if rtt < 0 || rtt > maxSampleRTT {
		return // not our clock's reading, or too old to say much
	}
	mid := sent.Add(rtt / 2)
	p.Clock = ClockSample{Offset: time.UnixMicro(clockUs).Sub(mid), RTT: rtt, At: now}
	m.clockAt = now
}

// needClock reports whether this node has live peers but no recent clock
// sample: then it probes at once rather than at the next protocol period,
// since local writes wait for a measurement.
func (m *Membership) needClock(now time.Time) bool {
	return m.NumLive() > 1 && (m.clockAt.IsZero() || now.Sub(m.clockAt) > ClockWindow)
}

// ClockOffset returns this node's clock offset to the cluster: the median,
// over the live members measured within ClockWindow, of this node's clock
// minus theirs (positive when this node is ahead), and how many members it
// is the median of. The median of many peers is robust to a few with
// wrong clocks or lying answers; with none measured, n is 0.
func (m *Membership) ClockOffset(now time.Time) (offset time.Duration, n int) {
	var offs []time.Duration
	for _, name := range m.names {
		p := m.members[name]
		if p.Live() && p.Clock.Measured() && now.Sub(p.Clock.At) <= ClockWindow {
			offs = append(offs, -p.Clock.Offset)
		}
	}
	if len(offs) == 0 {
		return 0, 0
	}
	slices.Sort(offs)
	mid := len(offs) / 2
	if len(offs)%2 == 1 {
		return offs[mid], len(offs)
	}
	return (offs[mid-1] + offs[mid]) / 2, len(offs)
}
