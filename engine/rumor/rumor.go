// Package rumor implements rumor mongering, the epidemic mechanism of Demers
// et al., "Epidemic Algorithms for Replicated Database Maintenance" (1987),
// §1.4: a node that learns a new update makes it a hot rumor and becomes
// infective; every round it pushes its hot rumors to a few peers chosen
// uniformly at random, until it loses interest.
//
// Loss of interest follows the paper's variants (§1.4, "Variations"):
//
//   - feedback: the receiver answers which rumors it already knew; only
//     those unnecessary contacts count against a rumor;
//   - blind: no answer; every send counts;
//   - counter: lose interest after k counted contacts;
//   - coin: lose interest with probability 1/k at each counted contact.
//
// A rumor also dies at a maximum age, whatever its counter says. The
// direction is push (infective nodes send), pull (every node asks a random
// peer for its hot rumors) or push-pull (both).
//
// Rumors that do not fit a datagram travel as announcements (key and
// version); a receiver that lacks the version fetches the body over a stream,
// so no update is dropped for its size.
//
// The package is pure: time and randomness come from the caller.
package rumor

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// Direction says who initiates a rumor exchange.
type Direction int

// The directions of Demers et al. §1.4.
const (
	Push Direction = iota
	Pull
	PushPull
)

// String returns "push", "pull" or "push-pull".
func (d Direction) String() string {
	switch d {
	case Pull:
		return "pull"
	case PushPull:
		return "push-pull"
	}
	return "push"
}

// ParseDirection parses "push", "pull" or "push-pull".
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "push":
		return Push, nil
	case "pull":
		return Pull, nil
	case "push-pull":
		return PushPull, nil
	}
	return 0, fmt.Errorf("rumor: unknown direction %q (want push, pull or push-pull)", s)
}

// Config tunes rumor mongering.
type Config struct {
	// Interval is the gossip round: every Interval (jittered by Jitter) an
	// infective node sends its hot rumors.
	Interval time.Duration
	// Jitter spreads each round over [Interval*(1-Jitter), Interval], so
	// nodes do not gossip in lockstep. 0 gives exact rounds (the textbook
	// synchronous model).
	Jitter float64
	// Fanout is how many peers, uniformly at random among live members, an
	// infective node contacts each round.
	Fanout int
	// Feedback selects the feedback rule (receivers say which rumors they
	// knew); false selects blind.
	Feedback bool
	// Coin selects the coin rule (lose interest with probability 1/K per
	// counted contact); false selects the counter rule (after K).
	Coin bool
	// K is the loss-of-interest parameter.
	K int
	// MaxAge kills a rumor this long after it became hot.
	MaxAge time.Duration
	// Direction is push, pull or push-pull.
	Direction Direction
	// MaxHot bounds the hot set; beyond it the oldest rumors are dropped
	// (and counted).
	MaxHot int
	// MaxMessageBytes is the record payload of one rumor message, sized to
	// stay in a datagram. A record larger than MaxInline travels as an
	// announcement.
	MaxMessageBytes int
	MaxInline       int
}

// DefaultConfig returns feedback-counter push with k=3 and fanout 3:
// with feedback and a counter, Demers et al. measure a residue below 0.1%
// at k=3 for fanout 1 (Table 1); fanout 3 drives it far lower and spreads in
// fewer rounds.
func DefaultConfig() Config {
	return Config{
		Interval:        200 * time.Millisecond,
		Jitter:          0.2,
		Fanout:          3,
		Feedback:        true,
		K:               3,
		MaxAge:          time.Minute,
		Direction:       Push,
		MaxHot:          100_000,
		MaxMessageBytes: 1100,
		MaxInline:       512,
	}
}

// Rule names the loss-of-interest rule as the simulator's --interest flag
// spells it: feedback-counter, feedback-coin, blind-counter, blind-coin.
func (c Config) Rule() string {
	s := "blind-"
	if c.Feedback {
		s = "feedback-"
	}
	if c.Coin {
		return s + "coin"
	}
	return s + "counter"
}

// SetRule sets Feedback and Coin from a rule name (see Rule).
func (c *Config) SetRule(rule string) error {
	switch rule {
	case "feedback-counter":
		c.Feedback, c.Coin = true, false
	case "feedback-coin":
		c.Feedback, c.Coin = true, true
	case "blind-counter":
		c.Feedback, c.Coin = false, false
	case "blind-coin":
		c.Feedback, c.Coin = false, true
	default:
		return fmt.Errorf("rumor: unknown loss-of-interest rule %q (want feedback-counter, feedback-coin, blind-counter or blind-coin)", rule)
	}
	return nil
}

// Stats counts what the monger did.
type Stats struct {
	Messages     uint64 // rumor messages sent (pushes and pull replies)
	Updates      uint64 // rumors carried by them, inline or announced
	Announced    uint64 // of those, announcements without body
	Pulls        uint64 // pull requests sent
	Fetches      uint64 // fetch requests sent for announced bodies
	Added        uint64 // rumors made hot
	LostInterest uint64 // rumors that died by the loss-of-interest rule
	DroppedAge   uint64 // rumors that died of old age
	DroppedFull  uint64 // rumors dropped because the hot set was full
	Hot          int    // rumors hot now
}

// Sampler picks up to k distinct peers uniformly at random.
type Sampler func(rng *rand.Rand, k int) []string

// SendFunc hands a message to the caller for the named peer; false if the
// peer cannot be addressed.
type SendFunc func(peer string, env *wire.Envelope) bool

type hot struct {
	seq     uint64 // position in order; an order entry with another seq is stale
	version store.Version
	counter int
	born    time.Time
}

type slot struct {
	key string
	seq uint64
}

type sent struct {
	keys    []string
	expires time.Time
}

// Monger is one node's rumor state. It is not safe for concurrent use.
type Monger struct {
	cfg    Config
	st     store.Store
	rng    *rand.Rand
	sample Sampler
	send   SendFunc

	hot       map[string]*hot
	order     []slot // keys in the order they became hot, stale slots included
	seq       uint64
	nextRound time.Time
	nextID    uint64
	pending   map[uint64]*sent // feedback awaited, by message id
	pendingQ  []uint64         // ids in send order, for expiry
	stats     Stats
}

// New returns a monger with nothing hot. Its first round is one interval
// after now.
func New(cfg Config, st store.Store, rng *rand.Rand, now time.Time, sample Sampler, send SendFunc) *Monger {
	if cfg.K < 1 {
		cfg.K = 1
	}
	if cfg.Fanout < 1 {
		cfg.Fanout = 1
	}
	m := &Monger{cfg: cfg, st: st, rng: rng, sample: sample, send: send, hot: map[string]*hot{}, pending: map[uint64]*sent{}}
	m.nextRound = now.Add(m.interval())
	return m
}

func (m *Monger) interval() time.Duration {
	d := m.cfg.Interval
	if m.cfg.Jitter > 0 {
		d -= time.Duration(m.rng.Float64() * m.cfg.Jitter * float64(d))
	}
	return d
}

// Stats returns the counters.
func (m *Monger) Stats() Stats {
	s := m.stats
	s.Hot = len(m.hot)
	return s
}

// Hot reports whether key is a hot rumor at the given version or newer.
func (m *Monger) Hot(key []byte) bool {
	_, ok := m.hot[string(key)]
	return ok
}

// Infective reports whether any rumor is hot.
func (m *Monger) Infective() bool { return len(m.hot) > 0 }

// Add makes a record a hot rumor: this node becomes infective for it. A
// newer version of a key already hot replaces it with a fresh counter.
func (m *Monger) Add(now time.Time, r store.Record) {
	k := string(r.Key)
	if h, ok := m.hot[k]; ok {
		if r.Version.Compare(h.version) > 0 {
			h.version, h.counter, h.born = r.Version, 0, now
		}
		return
	}
	if m.cfg.MaxHot > 0 && len(m.hot) >= m.cfg.MaxHot {
		m.evictOldest()
	}
	m.seq++
	m.hot[k] = &hot{seq: m.seq, version: r.Version, born: now}
	m.order = append(m.order, slot{key: k, seq: m.seq})
	m.stats.Added++
}

func (m *Monger) evictOldest() {
	for len(m.order) > 0 {
		sl := m.order[0]
		m.order = m.order[1:]
		if m.live(sl) {
			delete(m.hot, sl.key)
			m.stats.DroppedFull++
			return
		}
	}
}

func (m *Monger) kill(k string) {
	delete(m.hot, k)
	// order is compacted lazily, in expire.
}

// live reports whether an order slot still names a hot rumor.
func (m *Monger) live(sl slot) bool {
	h, ok := m.hot[sl.key]
	return ok && h.seq == sl.seq
}

// Deadline returns the time of the next round.
func (m *Monger) Deadline() time.Time { return m.nextRound }

// Tick runs a round if one is due.
func (m *Monger) Tick(now time.Time) error {
	if now.Before(m.nextRound) {
		return nil
	}
	m.nextRound = now.Add(m.interval())
	m.expire(now)
	if m.cfg.Direction != Push {
		for _, p := range m.sample(m.rng, m.cfg.Fanout) {
			if m.send(p, &wire.Envelope{Body: &wire.Envelope_RumorPull{RumorPull: &wire.RumorPull{Feedback: m.cfg.Feedback}}}) {
				m.stats.Pulls++
			}
		}
	}
	if m.cfg.Direction != Pull && len(m.hot) > 0 {
		for _, p := range m.sample(m.rng, m.cfg.Fanout) {
			if err := m.push(now, p, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// expire kills rumors past MaxAge, forgets feedback that will not come,
// and compacts the order list.
func (m *Monger) expire(now time.Time) {
	keep := m.order[:0]
	for _, sl := range m.order {
		if !m.live(sl) {
			continue
		}
		if m.cfg.MaxAge > 0 && now.Sub(m.hot[sl.key].born) >= m.cfg.MaxAge {
			m.kill(sl.key)
			m.stats.DroppedAge++
			continue
		}
		keep = append(keep, sl)
	}
	clear(m.order[len(keep):])
	m.order = keep
	for len(m.pendingQ) > 0 {
		id := m.pendingQ[0]
		if s, ok := m.pending[id]; ok && now.Before(s.expires) {
			break
		}
		delete(m.pending, id)
		m.pendingQ = m.pendingQ[1:]
	}
}

// push sends every hot rumor to peer, in as few messages as fit, and applies
// the blind rule or awaits feedback.
func (m *Monger) push(now time.Time, peer string, reply bool) error {
	var (
		msg   *wire.Rumor
		keys  []string
		bytes int
	)
	flush := func() {
		if msg == nil {
			return
		}
		m.nextID++
		msg.Id = m.nextID
		if !m.send(peer, &wire.Envelope{Body: &wire.Envelope_Rumor{Rumor: msg}}) {
			msg, keys, bytes = nil, nil, 0
			return
		}
		m.stats.Messages++
		m.stats.Updates += uint64(len(keys))
		if m.cfg.Feedback {
			m.pending[msg.Id] = &sent{keys: keys, expires: now.Add(10 * m.cfg.Interval)}
			m.pendingQ = append(m.pendingQ, msg.Id)
		} else {
			for _, k := range keys {
				m.contact(k)
			}
		}
		msg, keys, bytes = nil, nil, 0
	}
	for _, sl := range m.order {
		if !m.live(sl) {
			continue
		}
		k, h := sl.key, m.hot[sl.key]
		r, found, err := m.st.Get([]byte(k))
		if err != nil {
			return fmt.Errorf("rumor: read %q: %w", k, err)
		}
		if !found || r.Version.Compare(h.version) < 0 {
			// Collected, or (impossible for a store that only merges
			// upwards) older: nothing to spread.
			m.kill(k)
			continue
		}
		if msg != nil && bytes+r.Size() > m.cfg.MaxMessageBytes {
			flush()
		}
		if msg == nil {
			msg = &wire.Rumor{Reply: reply, Feedback: m.cfg.Feedback}
		}
		if r.Size() > m.cfg.MaxInline {
			msg.Announces = append(msg.Announces, &wire.Announce{Key: r.Key, Hlc: r.Version.HLC, Node: r.Version.Node})
			bytes += len(r.Key) + 20
			m.stats.Announced++
		} else {
			msg.Records = append(msg.Records, wire.FromStore(r))
			bytes += r.Size()
		}
		keys = append(keys, k)
	}
	flush()
	return nil
}

// contact applies the loss-of-interest rule to one counted contact.
func (m *Monger) contact(k string) {
	h, ok := m.hot[k]
	if !ok {
		return
	}
	var lose bool
	if m.cfg.Coin {
		lose = m.rng.IntN(m.cfg.K) == 0
	} else {
		h.counter++
		lose = h.counter >= m.cfg.K
	}
	if lose {
		m.kill(k)
		m.stats.LostInterest++
	}
}

// Pulled answers a pull request from peer with this node's hot rumors.
func (m *Monger) Pulled(now time.Time, peer string) error {
	if len(m.hot) == 0 {
		return nil
	}
	return m.push(now, peer, true)
}

// Feedback handles a RumorAck: the indices (into the message's records,
// then announcements) the receiver already knew.
func (m *Monger) Feedback(id uint64, known []uint32) {
	s, ok := m.pending[id]
	if !ok {
		return
	}
	delete(m.pending, id)
	for _, i := range known {
		if int(i) < len(s.keys) {
			m.contact(s.keys[i])
		}
	}
}

// Fetch answers a request for the bodies of announced rumors: the current
// records of the keys, sent to peer in one reply (the transport streams it).
func (m *Monger) Fetch(peer string, keys [][]byte) error {
	var recs []*wire.Record
	for _, k := range keys {
		r, ok, err := m.st.Get(k)
		if err != nil {
			return fmt.Errorf("rumor: read %q for fetch: %w", k, err)
		}
		if ok {
			recs = append(recs, wire.FromStore(r))
		}
	}
	if len(recs) > 0 {
		m.send(peer, &wire.Envelope{Body: &wire.Envelope_Rumor{Rumor: &wire.Rumor{Reply: true, Records: recs}}})
	}
	return nil
}

// RequestFetch asks peer for the bodies of announced rumors this node lacks.
func (m *Monger) RequestFetch(peer string, keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	if m.send(peer, &wire.Envelope{Body: &wire.Envelope_Fetch{Fetch: &wire.Fetch{Keys: keys}}}) {
		m.stats.Fetches++
	}
}
