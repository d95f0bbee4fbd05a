// Package trust scores a node's peers by the offences it can check and
// decides which are quarantined.
//
// Every offence a node observes adds its kind's weight to the offender's
// penalty; penalties decay exponentially (HalfLife), so a peer that stops
// offending is forgiven in a few half-lives. A peer whose penalty reaches
// Threshold is quarantined; it is released when the penalty has decayed
// below half the threshold (the hysteresis keeps a peer near the threshold
// from flapping). A peer's score, as shown to operators, is the negated
// penalty: 0 for a peer never caught, falling with each offence, and the
// peer is quarantined below -Threshold.
//
// The weights are set so that what an honest peer does under loss, slow
// links and restarts never adds up to the threshold: an honest node's
// suspicions are refuted all the time under packet loss, and its
// anti-entropy exchanges stall now and then, so those weigh little; what an
// honest node never sends (records that fail validation, versions far
// beyond the clock bound, floods of invented members) weighs much.
//
// The package is pure, as the engine is: time comes from the caller.
package trust

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Offence kinds, the label values of hearsay_offences_total{kind}.
const (
	// Undecodable: a frame from the peer that does not decode (reported by
	// the driver).
	Undecodable = "undecodable"
	// Unauthenticated: a frame that fails authentication but can still be
	// attributed to the peer (reported by the driver).
	Unauthenticated = "unauthenticated"
	// Signature: a record whose signature is missing or does not verify
	// against its origin's certificate (engine.OffenceSignature).
	Signature = "signature"
	// Certificate: a node certificate that does not verify against the
	// cluster CA (engine.OffenceCertificate).
	Certificate = "certificate"
	// Claim: a membership claim whose signature does not verify
	// (engine.OffenceClaim).
	Claim = "claim"
	// InvalidRecord: a record that fails store.Check (key or value size,
	// a value on a tombstone, a zero version).
	InvalidRecord = "invalid_record"
	// FutureVersion: a record stamped beyond the receiver's clock plus the
	// clock-skew bound.
	FutureVersion = "future_version"
	// MemberFlood: more new members in one second than
	// membership.Config.MaxNewMembersPerSecond allows one sender.
	MemberFlood = "member_flood"
	// RateLimit: a request beyond its sender's rate limit
	// (engine.RateLimits), scored at most once per peer, kind and second.
	RateLimit = "rate_limit"
	// BadProtocol: a message that breaks the protocol (an anti-entropy
	// digest that does not decode, a session out of order).
	BadProtocol = "bad_protocol"
	// StalledExchange: an anti-entropy exchange with the peer abandoned
	// without progress.
	StalledExchange = "stalled_exchange"
	// RefutedAccusation: a suspicion or death claim the peer made, first
	// hand, that its target refuted.
	RefutedAccusation = "refuted_accusation"
)

// Kinds lists the offence kinds in a fixed order.
var Kinds = []string{Undecodable, Unauthenticated, Signature, Certificate, Claim, InvalidRecord, FutureVersion,
	MemberFlood, RateLimit, BadProtocol, StalledExchange, RefutedAccusation}

// DefaultWeights are the penalties of each kind. With the default
// threshold of 100: 4 bad signatures, 10 invalid or future records (in
// separate messages), 4 seconds of member flood quarantine a peer; 50
// stalled exchanges or refuted accusations within a half-life do.
func DefaultWeights() map[string]float64 {
	return map[string]float64{
		Undecodable:       10,
		Unauthenticated:   10,
		Signature:         25,
		Certificate:       25,
		Claim:             25,
		InvalidRecord:     10,
		FutureVersion:     10,
		MemberFlood:       50,
		RateLimit:         10,
		BadProtocol:       10,
		StalledExchange:   2,
		RefutedAccusation: 5,
	}
}

// Defaults of Config's fields, used where they are zero.
const (
	DefaultThreshold = 100
	DefaultHalfLife  = time.Minute
	// DefaultMaxPeers is membership's DefaultMaxMembers: every member of
	// a full view can be scored.
	DefaultMaxPeers = 4096
)

// Config tunes scoring and quarantine. The zero value is the defaults,
// with quarantine on.
type Config struct {
	// Disabled turns the defences off: nobody is quarantined and death
	// claims are believed as SWIM does. Offences are still scored and
	// counted.
	Disabled bool
	// Threshold is the penalty at which a peer is quarantined; it is
	// released below half of it. 0 means DefaultThreshold.
	Threshold float64
	// HalfLife is how long a penalty takes to halve. 0 means
	// DefaultHalfLife.
	HalfLife time.Duration
	// Weights maps each offence kind to its penalty; kinds not listed
	// weigh DefaultWeights' value.
	Weights map[string]float64
	// MaxPeers bounds the peers tracked; beyond it the one with the least
	// penalty is forgotten. 0 means DefaultMaxPeers.
	MaxPeers int
}

// DefaultConfig returns the defaults: on, threshold 100, half-life one
// minute, 4096 peers tracked.
func DefaultConfig() Config {
	return Config{Threshold: DefaultThreshold, HalfLife: DefaultHalfLife, MaxPeers: DefaultMaxPeers}
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.HalfLife == 0 {
		c.HalfLife = DefaultHalfLife
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	return c
}

// Validate reports what would stop scoring from working.
func (c Config) Validate() error {
	if c.Threshold < 0 || math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) {
		return fmt.Errorf("Trust.Threshold must be a positive number (0: %d), got %v", DefaultThreshold, c.Threshold)
	}
	if c.HalfLife < 0 {
		return fmt.Errorf("Trust.HalfLife must be positive (0: %v), got %v", DefaultHalfLife, c.HalfLife)
	}
	if c.MaxPeers < 0 {
		return fmt.Errorf("Trust.MaxPeers must be positive (0: %d), got %d", DefaultMaxPeers, c.MaxPeers)
	}
	for k, w := range c.Weights {
		if !slices.Contains(Kinds, k) {
			return fmt.Errorf("Trust.Weights: unknown offence kind %q (want one of %v)", k, Kinds)
		}
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("Trust.Weights[%s] must be a non-negative number, got %v", k, w)
		}
	}
	return nil
}

// Weight returns the penalty of an offence kind; unknown kinds weigh as
// BadProtocol.
func (c Config) Weight(kind string) float64 {
	if w, ok := c.Weights[kind]; ok {
		return w
	}
	if w, ok := DefaultWeights()[kind]; ok {
		return w
	}
	return DefaultWeights()[BadProtocol]
}

type peer struct {
	penalty     float64
	at          time.Time // when penalty was last brought up to date
	quarantined bool
	strikes     int // times quarantined
}

// maxStrikes caps the doubling of a repeat offender's quarantine.
const maxStrikes = 6

// Change reports that a peer entered or left quarantine.
type Change struct {
	Peer        string
	Quarantined bool
	Penalty     float64
	// Kind is the offence that tipped the peer into quarantine, empty on
	// release.
	Kind string
}

// Scores holds the penalties of a node's peers. It is not safe for
// concurrent use.
type Scores struct {
	cfg         Config
	peers       map[string]*peer
	quarantined int
	offences    map[string]uint64
	// counted is what Offences last returned, shared until the next
	// offence (nil then): the runtime reads the counts after every batch.
	counted map[string]uint64
	changes []Change
}

// New returns empty scores.
func New(cfg Config) *Scores {
	cfg = cfg.withDefaults()
	w := make(map[string]float64, len(Kinds))
	for _, k := range Kinds {
		w[k] = cfg.Weight(k)
	}
	cfg.Weights = w
	return &Scores{cfg: cfg, peers: map[string]*peer{}, offences: map[string]uint64{}}
}

// decay brings p's penalty up to date at now.
func (s *Scores) decay(p *peer, now time.Time) {
	if dt := now.Sub(p.at); dt > 0 {
		p.penalty *= math.Exp2(-float64(dt) / float64(s.cfg.HalfLife))
		p.at = now
	}
}

// Offence records one offence of kind by name at now and reports whether
// it put the peer in quarantine.
func (s *Scores) Offence(now time.Time, name, kind string) bool {
	return s.OffenceTimes(now, name, kind, 1)
}

// OffenceTimes records one offence of kind by name that weighs mult times
// its kind's weight: how a repeated offence weighs more (an exchange that
// stalls for the tenth time in a row says more than one that stalls once).
func (s *Scores) OffenceTimes(now time.Time, name, kind string, mult float64) bool {
	if _, ok := s.cfg.Weights[kind]; !ok {
		kind = BadProtocol // the counters stay bounded by Kinds
	}
	s.offences[kind]++
	s.counted = nil
	if name == "" {
		return false
	}
	p := s.peers[name]
	if p == nil {
		if len(s.peers) >= s.cfg.MaxPeers {
			s.evict(now)
		}
		p = &peer{at: now}
		s.peers[name] = p
	}
	s.decay(p, now)
	p.penalty += s.cfg.Weights[kind] * mult
	if !s.cfg.Disabled && !p.quarantined && p.penalty >= s.cfg.Threshold {
		// A peer released and caught again stays out twice as long each
		// time: a peer still faulty must not get a flood in every half-life
		// or two, while one repaired comes back once its penalty decays.
		p.penalty = max(p.penalty, s.cfg.Threshold*math.Exp2(float64(p.strikes)))
		p.strikes = min(p.strikes+1, maxStrikes)
		p.quarantined = true
		s.quarantined++
		s.changes = append(s.changes, Change{Peer: name, Quarantined: true, Penalty: p.penalty, Kind: kind})
		return true
	}
	return false
}

// evict forgets the peer with the least penalty, quarantined peers last.
func (s *Scores) evict(now time.Time) {
	var victim string
	var low float64
	found := false
	for name, p := range s.peers {
		s.decay(p, now)
		pen := p.penalty
		if p.quarantined {
			pen += s.cfg.Threshold * 1e6
		}
		if !found || pen < low || (pen == low && name < victim) {
			victim, low, found = name, pen, true
		}
	}
	if p := s.peers[victim]; p != nil && p.quarantined {
		s.quarantined--
		s.changes = append(s.changes, Change{Peer: victim})
	}
	delete(s.peers, victim)
}

// Quarantined reports whether name is quarantined at now. A quarantined
// peer whose penalty has decayed below half the threshold is released.
func (s *Scores) Quarantined(now time.Time, name string) bool {
	p := s.peers[name]
	if p == nil || !p.quarantined {
		return false
	}
	s.decay(p, now)
	if p.penalty < s.cfg.Threshold/2 {
		s.release(name, p)
		return false
	}
	return true
}

func (s *Scores) release(name string, p *peer) {
	p.quarantined = false
	s.quarantined--
	s.changes = append(s.changes, Change{Peer: name, Penalty: p.penalty})
}

// Tick releases the peers whose penalty has decayed below half the
// threshold and forgets those whose penalty is negligible, so the map
// holds only peers recently caught.
func (s *Scores) Tick(now time.Time) {
	for _, name := range s.sortedNames() {
		p := s.peers[name]
		s.decay(p, now)
		if p.quarantined && p.penalty < s.cfg.Threshold/2 {
			s.release(name, p)
		}
		if !p.quarantined && p.penalty < s.cfg.Threshold/1000 && p.strikes == 0 {
			delete(s.peers, name)
		}
	}
}

// NextRelease returns when Tick next has something to release, zero if no
// peer is quarantined.
func (s *Scores) NextRelease(now time.Time) time.Time {
	var next time.Time
	for _, p := range s.peers {
		if !p.quarantined {
			continue
		}
		s.decay(p, now)
		// penalty * 2^(-t/h) = threshold/2  =>  t = h * log2(2*penalty/threshold)
		t := now.Add(time.Duration(float64(s.cfg.HalfLife)*math.Log2(2*p.penalty/s.cfg.Threshold)) + time.Millisecond)
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

func (s *Scores) sortedNames() []string {
	out := make([]string, 0, len(s.peers))
	for n := range s.peers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Score returns name's score at now: the negated penalty, 0 for a peer
// with none.
func (s *Scores) Score(now time.Time, name string) float64 {
	p := s.peers[name]
	if p == nil {
		return 0
	}
	s.decay(p, now)
	return -p.penalty
}

// NumQuarantined returns how many peers are quarantined.
func (s *Scores) NumQuarantined() int { return s.quarantined }

// Offences returns the offences counted since the start, by kind (every
// kind present). The map is shared by the calls until the next offence:
// read it, do not modify it.
func (s *Scores) Offences() map[string]uint64 {
	if s.counted != nil {
		return s.counted
	}
	out := make(map[string]uint64, len(Kinds))
	for _, k := range Kinds {
		out[k] = 0
	}
	for k, v := range s.offences {
		out[k] = v
	}
	s.counted = out
	return out
}

// Changes returns and clears the quarantine decisions made since the last
// call.
func (s *Scores) Changes() []Change {
	c := s.changes
	s.changes = nil
	return c
}

// Tracked returns how many peers have a penalty.
func (s *Scores) Tracked() int { return len(s.peers) }
