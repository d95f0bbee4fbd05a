package engine

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hearsaydb/hearsay/engine/trust"
)

// ErrRateLimited is returned by Step for a request beyond its sender's
// rate limit (RateLimits): it is dropped unserved.
var ErrRateLimited = errors.New("engine: sender over its rate limit")

// Requests limited per peer, the label values of
// hearsay_rate_limited_messages_total{kind}. Each is a request this node
// serves at some cost (a reply that may be much larger than the request, an
// exchange over the whole replica), and whose rate an honest peer's timers
// bound (see RateLimits).
const (
	// LimitAEStart: anti-entropy exchanges the peer starts with this node.
	LimitAEStart = "ae_start"
	// LimitRumorPull: rumor pulls, each answered with this node's hot
	// rumors.
	LimitRumorPull = "rumor_pull"
	// LimitFetch: requests for the bodies of announced rumors, each
	// answered with up to as many records as it names keys.
	LimitFetch = "fetch"
)

// LimitKinds lists the limited requests in a fixed order.
var LimitKinds = []string{LimitAEStart, LimitRumorPull, LimitFetch}

// Indices of the kinds in LimitKinds and peerBuckets.
const (
	limAEStart = iota
	limRumorPull
	limFetch
)

// Rate is a token bucket: a peer may send Burst requests at once, and
// PerSecond more every second after that.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Defaults of RateLimits' fields, used where they are zero. Each is at
// least three times what an honest peer with the default settings can send
// (see RateLimits).
var (
	DefaultAEStartRate   = Rate{PerSecond: 1, Burst: 10}
	DefaultRumorPullRate = Rate{PerSecond: 20, Burst: 40}
	DefaultFetchRate     = Rate{PerSecond: 60, Burst: 120}
)

// DefaultRateLimitPeers bounds the peers whose buckets are kept, as
// trust.DefaultMaxPeers bounds the scores.
const DefaultRateLimitPeers = 4096

// RateLimits bounds the requests each peer may send this node. A request
// beyond its bucket is dropped unserved (Step returns ErrRateLimited),
// counted in TrustStats.RateLimited, and scored as a trust.RateLimit
// offence against its sender, at most once per peer, kind and second: a
// peer that keeps flooding is quarantined in about ten seconds with the
// default weights, and one that sent a single burst too many is forgiven.
//
// The limits are set above what an honest peer's timers allow, so that
// only a faulty peer meets them; a cluster whose members run faster
// timers than the defaults needs limits raised to match:
//
//   - AEStart: an honest node starts one exchange every AE.Interval less
//     its jitter (5 s at the defaults) with one random peer, and one more
//     when it joins; one refused as busy is retried only at the next
//     interval, and a lost start is not resent (the exchange times out).
//   - RumorPull: in pull mode an honest node pulls from each peer at most
//     once per rumor round (Rumor.Interval less its jitter, 160 ms: 6.25 a
//     second).
//   - Fetch: an honest node asks this node for bodies once per rumor
//     message with announcements this node sent it (at most one push per
//     round and one answer per pull) and once per round for retries after
//     FetchTimeout: about 19 a second at the defaults.
//
// Loss and retries add nothing: none of these requests is resent on a
// timer of its own. A restarted peer starts with fresh timers, which is no
// faster.
type RateLimits struct {
	// Disabled turns the limits off: every request is served.
	Disabled bool
	// AEStart, RumorPull and Fetch are the buckets of each kind; a zero
	// field takes its default.
	AEStart, RumorPull, Fetch Rate
	// MaxPeers bounds the peers whose buckets are kept. Buckets that have
	// refilled are forgotten by the once-a-second sweep (a full bucket is
	// the state of a peer never seen), and those of dead or departed
	// members at once; beyond MaxPeers all are forgotten, which lets each
	// peer one more burst in. 0 means DefaultRateLimitPeers.
	MaxPeers int
}

// DefaultRateLimits returns the defaults.
func DefaultRateLimits() RateLimits {
	return RateLimits{AEStart: DefaultAEStartRate, RumorPull: DefaultRumorPullRate, Fetch: DefaultFetchRate,
		MaxPeers: DefaultRateLimitPeers}
}

func (r RateLimits) withDefaults() RateLimits {
	d := DefaultRateLimits()
	fill := func(x *Rate, def Rate) {
		if x.PerSecond == 0 {
			x.PerSecond = def.PerSecond
		}
		if x.Burst == 0 {
			x.Burst = def.Burst
		}
	}
	fill(&r.AEStart, d.AEStart)
	fill(&r.RumorPull, d.RumorPull)
	fill(&r.Fetch, d.Fetch)
	if r.MaxPeers == 0 {
		r.MaxPeers = d.MaxPeers
	}
	return r
}

// Validate reports what would stop the limits from working.
func (r RateLimits) Validate() error {
	var errs []error
	for _, x := range []struct {
		name string
		r    Rate
	}{{"AEStart", r.AEStart}, {"RumorPull", r.RumorPull}, {"Fetch", r.Fetch}} {
		if x.r.PerSecond < 0 || math.IsNaN(x.r.PerSecond) || math.IsInf(x.r.PerSecond, 0) {
			errs = append(errs, fmt.Errorf("RateLimits.%s.PerSecond must be a positive number (0: default), got %v", x.name, x.r.PerSecond))
		}
		if x.r.Burst < 0 {
			errs = append(errs, fmt.Errorf("RateLimits.%s.Burst must be positive (0: default), got %d", x.name, x.r.Burst))
		}
	}
	if r.MaxPeers < 0 {
		errs = append(errs, fmt.Errorf("RateLimits.MaxPeers must be positive (0: %d), got %d", DefaultRateLimitPeers, r.MaxPeers))
	}
	return errors.Join(errs...)
}

func (r RateLimits) rate(i int) Rate {
	switch i {
	case limAEStart:
		return r.AEStart
	case limRumorPull:
		return r.RumorPull
	default:
		return r.Fetch
	}
}

// bucket is one peer's token bucket for one kind of request.
type bucket struct {
	tokens   float64
	at       time.Time // when tokens was last brought up to date
	scoredAt time.Time // when its last excess was scored; zero if never
}

// peerBuckets holds a peer's buckets, indexed as LimitKinds.
type peerBuckets [3]bucket

// limiter keeps the buckets of the peers that sent limited requests lately.
type limiter struct {
	cfg     RateLimits
	peers   map[string]*peerBuckets
	refused map[string]uint64
}

func newLimiter(cfg RateLimits) *limiter {
	return &limiter{cfg: cfg.withDefaults(), peers: map[string]*peerBuckets{}, refused: map[string]uint64{}}
}

// refill brings b up to date at now.
func (l *limiter) refill(b *bucket, i int, now time.Time) {
	r := l.cfg.rate(i)
	if b.at.IsZero() {
		b.tokens, b.at = float64(r.Burst), now
		return
	}
	if dt := now.Sub(b.at); dt > 0 {
		b.tokens = min(float64(r.Burst), b.tokens+dt.Seconds()*r.PerSecond)
		b.at = now
	}
}

// take spends one token of kind i from peer's bucket. It reports whether
// the request may be served and, if not, whether its excess is to be
// scored (once per peer, kind and second).
func (l *limiter) take(now time.Time, peer string, i int) (ok, score bool) {
	if l.cfg.Disabled {
		return true, false
	}
	p := l.peers[peer]
	if p == nil {
		if len(l.peers) >= l.cfg.MaxPeers {
			l.sweep(now)
			if len(l.peers) >= l.cfg.MaxPeers {
				clear(l.peers) // bounded: each peer gets one more burst
			}
		}
		p = &peerBuckets{}
		l.peers[peer] = p
	}
	b := &p[i]
	l.refill(b, i, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, false
	}
	l.refused[LimitKinds[i]]++
	if !b.scoredAt.IsZero() && now.Sub(b.scoredAt) < time.Second && !now.Before(b.scoredAt) {
		return false, false
	}
	b.scoredAt = now
	return false, true
}

// sweep forgets the peers whose buckets have all refilled: keeping them
// changes nothing.
func (l *limiter) sweep(now time.Time) {
	for name, p := range l.peers {
		full := true
		for i := range p {
			b := &p[i]
			if b.at.IsZero() {
				continue
			}
			l.refill(b, i, now)
			if b.tokens < float64(l.cfg.rate(i).Burst) || now.Sub(b.scoredAt) < time.Second {
				full = false
			}
		}
		if full {
			delete(l.peers, name)
		}
	}
}

// forget drops a peer's buckets (a dead or departed member).
func (l *limiter) forget(peer string) { delete(l.peers, peer) }

// Refused returns the requests refused so far, by kind (every kind of
// LimitKinds present).
func (l *limiter) Refused() map[string]uint64 {
	out := make(map[string]uint64, len(LimitKinds))
	for _, k := range LimitKinds {
		out[k] = l.refused[k]
	}
	return out
}

// allow applies peer's rate limit of kind i to one request: it returns
// ErrRateLimited (wrapped) if the request is to be dropped, and scores the
// excess.
func (e *Engine) allow(now time.Time, peer string, i int) error {
	ok, score := e.limits.take(now, peer, i)
	if ok {
		return nil
	}
	if score {
		e.reportOffence(now, peer, trust.RateLimit)
	}
	return fmt.Errorf("%w: %s from %q", ErrRateLimited, LimitKinds[i], peer)
}
