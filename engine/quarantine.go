package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/engine/trust"
)

// ErrQuarantined is returned by Step for an envelope from a quarantined
// peer: it is dropped unread.
var ErrQuarantined = errors.New("engine: sender quarantined")

// trustTickInterval is how often the scores are swept for releases and
// forgotten peers.
const trustTickInterval = time.Second

// TrustStats counts what peer scoring did.
type TrustStats struct {
	// Quarantined is the number of peers quarantined now.
	Quarantined int
	// Dropped counts envelopes dropped because their sender was
	// quarantined.
	Dropped uint64
	// Quarantines and Releases count decisions.
	Quarantines, Releases uint64
	// Offences counts offences observed, by kind (every kind of
	// trust.Kinds present).
	Offences map[string]uint64
	// RateLimited counts requests dropped for their sender's rate limit,
	// by kind (every kind of LimitKinds present).
	RateLimited map[string]uint64
}

// initTrust sets up peer scoring and hands membership its offence
// reporter.
func (e *Engine) initTrust() {
	e.trust = trust.New(e.cfg.Trust)
	e.limits = newLimiter(e.cfg.RateLimits)
	e.members.SetDefences(e.reportOffence, !e.cfg.Trust.Disabled)
}

// reportOffence scores one offence of kind by peer (a member name) and
// applies the quarantine decisions it leads to. Used inside the engine
// wherever a peer sends what does not check out.
func (e *Engine) reportOffence(now time.Time, peer string, kind string) {
	if peer == "" || peer == e.cfg.Name {
		return
	}

	e.trust.Offence(now, peer, kind)
	e.applyTrust(now)
}

// Offence reports an offence the driver observed and can attribute: a
// frame that did not decode or authenticate, a rate limit exceeded. peer
// is a member name or, if no member has that name, the gossip address of
// one. kind must be one of trust.Kinds.
func (e *Engine) Offence(now time.Time, peer, kind string) error {
	if !slices.Contains(trust.Kinds, kind) {
		return fmt.Errorf("engine: offence kind %q: want one of %v", kind, trust.Kinds)
	}
	if peer == "" {
		return errors.New("engine: offence without a peer")
	}
	if _, ok := e.members.Get(peer); !ok {
		for _, m := range e.members.Members() {
			if m.Addr == peer {
				peer = m.Name
				break
			}
		}
	}
	e.reportOffence(now, peer, kind)
	return nil
}

// maxStallStreak caps the multiplier of a stalled exchange's weight.
const maxStallStreak = 10

// onStall scores an anti-entropy exchange with peer abandoned without
// progress. Under loss an honest peer's exchanges stall now and then, each
// time weighing little; a peer that answers the membership protocol but
// never the exchanges (a black hole) stalls every one, and each stall in a
// row weighs more, up to maxStallStreak times the weight. Any replication
// message from the peer ends the streak.
func (e *Engine) onStall(now time.Time, peer string) {
	if peer == "" || peer == e.cfg.Name {
		return
	}
	if e.stallStreak == nil {
		e.stallStreak = map[string]int{}
	}
	n, ok := e.stallStreak[peer]
	if !ok && len(e.stallStreak) >= maxStallPeers {
		clear(e.stallStreak) // bounded: streaks restart
	}
	n = min(n+1, maxStallStreak)
	e.stallStreak[peer] = n

	e.trust.OffenceTimes(now, peer, trust.StalledExchange, float64(n))
	e.applyTrust(now)
}

// maxStallPeers bounds the stall streaks kept.
const maxStallPeers = 4096

// heardData ends peer's streak of stalled exchanges.
func (e *Engine) heardData(peer string) {
	if len(e.stallStreak) > 0 {
		delete(e.stallStreak, peer)
	}
}

// applyTrust carries the scores' decisions to the membership view and the
// outboxes: a quarantined peer is chosen for nothing, and its mail is
// dropped (anti-entropy repairs it once it is released).
func (e *Engine) applyTrust(now time.Time) {
	for _, ch := range e.trust.Changes() {
		e.members.SetQuarantined(now, ch.Peer, ch.Quarantined)
		if ch.Quarantined {
			e.trustStats.Quarantines++
			e.mail.Drop(ch.Peer)
		} else {
			e.trustStats.Releases++
		}
		e.ready.Quarantine = append(e.ready.Quarantine, ch)
	}
}

// quarantined reports whether envelopes from name are dropped.
func (e *Engine) quarantined(now time.Time, name string) bool {

	q := e.trust.Quarantined(now, name)
	e.applyTrust(now)
	if q {
		e.members.SetQuarantined(now, name, true) // a member added since
	}
	return q
}

// Quarantined reports whether the peer is quarantined.
func (e *Engine) Quarantined(now time.Time, name string) bool { return e.quarantined(now, name) }

// Score returns the peer's score: 0 for a peer never caught, falling by
// each offence's weight and decaying back towards 0; quarantined below
// minus the threshold.
func (e *Engine) Score(now time.Time, name string) float64 { return e.trust.Score(now, name) }

// tickTrust releases peers whose penalty has decayed.
func (e *Engine) tickTrust(now time.Time) {
	if now.Before(e.trustAt) {
		return
	}
	e.trustAt = now.Add(trustTickInterval)
	e.trust.Tick(now)
	e.applyTrust(now)
	e.limits.sweep(now)
}

// trustDeadline is when tickTrust next has work: only while peers are
// scored or have buckets.
func (e *Engine) trustDeadline() time.Time {
	if e.trust.Tracked() == 0 && len(e.limits.peers) == 0 {
		return time.Time{}
	}
	return e.trustAt
}

// aeOffence scores an anti-entropy error that breaks the protocol.
func (e *Engine) aeOffence(now time.Time, peer string, err error) {
	if errors.Is(err, antientropy.ErrBadDigest) || errors.Is(err, antientropy.ErrProtocol) {
		e.reportOffence(now, peer, trust.BadProtocol)
	}
}

func (e *Engine) trustStatsNow() TrustStats {
	s := e.trustStats
	s.Quarantined = e.trust.NumQuarantined()
	s.Offences = e.trust.Offences()
	s.RateLimited = e.limits.Refused()
	return s
}
