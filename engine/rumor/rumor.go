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
// so no update is dropped for its size. It asks one announcer at a time,
// and another one (or the same one again) when the body does not come
// within FetchTimeout; an announcement of what is already being fetched only
// adds its sender to the announcers to ask next.
//
// The package is pure: time and randomness come from the caller.
package rumor

import (
	"fmt"
	"math/rand/v2"
	"slices"
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
	// AnnounceK is K for rumors that travel as announcements. An
	// announcement costs a few dozen bytes, the body is fetched once per
	// node whatever K is, and each unit of K divides the residue by about
	// e (Demers et al. §1.4), so large updates are announced for longer.
	// 0 means 2K.
	AnnounceK int
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
	// FetchTimeout is how long a fetch of an announced body may go
	// unanswered before it is asked of another announcer. It doubles with
	// each try, so that a slow link is not flooded with repeated bodies.
	// 0 means 5 intervals.
	FetchTimeout time.Duration
	// MaxFetching bounds the announced bodies being fetched at once; beyond
	// it, announcements are not fetched (anti-entropy repairs them, or a
	// later announcement is). 0 means 10,000.
	MaxFetching int
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
		FetchTimeout:    time.Second,
		MaxFetching:     10_000,
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
	FetchRetries uint64 // bodies asked again, of another announcer, after FetchTimeout
	FetchFailed  uint64 // bodies given up on after maxFetchTries
	Served       uint64 // bodies sent in answer to fetches
	Added        uint64 // rumors made hot
	LostInterest uint64 // rumors that died by the loss-of-interest rule
	DroppedAge   uint64 // rumors that died of old age
	DroppedFull  uint64 // rumors dropped because the hot set was full
	Hot          int    // rumors hot now
	Fetching     int    // announced bodies being fetched now
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
	// announced: the rumor is too large to travel inline (AnnounceK
	// applies).
	announced bool
	// keepUntil: a body was fetched from this node until then at the
	// latest; the rumor does not lose interest before its fetches settle.
	keepUntil time.Time
}

type slot struct {
	key string
	seq uint64
}

type sent struct {
	keys    []string
	expires time.Time
}

// maxFetchTries is how many times a body is asked for, of the announcers
// in turn, before the fetch is given up.
const maxFetchTries = 5

// fetch is a body this node asked for and has not received.
type fetch struct {
	version  store.Version
	peer     string   // asked last
	others   []string // other announcers, to ask next, in the order heard
	deadline time.Time
	tries    int
}

// maxAnnouncers bounds fetch.others.
const maxAnnouncers = 8

// Monger is one node's rumor state. It is not safe for concurrent use.
type Monger struct {
	cfg    Config
	st     store.Store
	rng    *rand.Rand
	sample Sampler
	send   SendFunc

	hot map[string]*hot
	// order holds the hot keys in the order they became hot, which is
	// also the order they reach MaxAge (a fixed age): a round expires
	// from the front what is due and stops at the first that is not.
	// Slots of rumors that died or were replaced meanwhile are stale and
	// skipped; they are compacted away once they outnumber the live ones.
	order     []slot
	seq       uint64
	armed     bool // a round is scheduled at nextRound
	nextRound time.Time
	nextID    uint64
	pending   map[uint64]*sent // feedback awaited, by message id
	pendingQ  []uint64         // ids in send order, for expiry
	fetching  map[string]*fetch
	now       time.Time // the latest time the monger was given
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
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 5 * cfg.Interval
	}
	if cfg.MaxFetching <= 0 {
		cfg.MaxFetching = 10_000
	}
	if cfg.AnnounceK <= 0 {
		cfg.AnnounceK = 2 * cfg.K
	}
	m := &Monger{cfg: cfg, st: st, rng: rng, sample: sample, send: send, hot: map[string]*hot{}, pending: map[uint64]*sent{}, fetching: map[string]*fetch{}}
	if cfg.Direction != Push {
		m.arm(now)
	}
	return m
}

// arm schedules a round one interval after now, unless one is scheduled.
// Push rounds are scheduled only while there is something to do (hot
// rumors, fetches awaited), so that an idle node does not wake up every
// interval; pull rounds always are.
func (m *Monger) arm(now time.Time) {
	m.now = now
	if !m.armed {
		m.armed = true
		m.nextRound = now.Add(m.interval())
	}
}

// busy reports whether a round has work to do.
func (m *Monger) busy() bool {
	return m.cfg.Direction != Push || len(m.hot) > 0 || len(m.fetching) > 0
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
	s.Fetching = len(m.fetching)
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
			// Born again: it moves to the back of the order.
			m.seq++
			h.seq, h.version, h.counter, h.born = m.seq, r.Version, 0, now
			m.order = append(m.order, slot{key: k, seq: m.seq})
			m.compact()
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
	m.arm(now)
}

// compact drops the stale slots of order once they outnumber the live
// ones, so that order stays within twice the hot set (amortised O(1) per
// rumor).
func (m *Monger) compact() {
	if len(m.order) <= 2*len(m.hot)+64 {
		return
	}
	keep := m.order[:0]
	for _, sl := range m.order {
		if m.live(sl) {
			keep = append(keep, sl)
		}
	}
	clear(m.order[len(keep):])
	m.order = keep
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

// kill makes k cold. Its slot in order goes stale; compact (at the end of
// a round, never while push walks order) drops it.
func (m *Monger) kill(k string) {
	delete(m.hot, k)
}

// live reports whether an order slot still names a hot rumor.
func (m *Monger) live(sl slot) bool {
	h, ok := m.hot[sl.key]
	return ok && h.seq == sl.seq
}

// Deadline returns the time of the next round; the zero time if none is
// scheduled (push, nothing hot, nothing being fetched).
func (m *Monger) Deadline() time.Time {
	if !m.armed {
		return time.Time{}
	}
	return m.nextRound
}

// Tick runs a round if one is due.
func (m *Monger) Tick(now time.Time) error {
	m.now = now
	if !m.armed || now.Before(m.nextRound) {
		return nil
	}
	m.armed = false
	defer func() {
		m.compact()
		if m.busy() {
			m.arm(now)
		}
	}()
	m.expire(now)
	m.retryFetches(now)
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

// expire kills rumors past MaxAge and forgets feedback that will not
// come. It touches only the front of order: what is due, and the stale
// slots before it.
func (m *Monger) expire(now time.Time) {
	for len(m.order) > 0 {
		sl := m.order[0]
		if m.live(sl) {
			if m.cfg.MaxAge <= 0 || now.Sub(m.hot[sl.key].born) < m.cfg.MaxAge {
				break
			}
			delete(m.hot, sl.key)
			m.stats.DroppedAge++
		}
		m.order[0] = slot{}
		m.order = m.order[1:]
	}
	if len(m.order) == 0 {
		m.order = nil // let the backing array go
	}
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
		msg     *wire.Rumor
		recKeys []string // keys of msg.Records
		annKeys []string // keys of msg.Announces
		bytes   int
	)
	flush := func() {
		if msg == nil {
			return
		}
		m.nextID++
		msg.Id = m.nextID
		// Feedback indexes the records, then the announcements.
		keys := append(recKeys, annKeys...)
		if !m.send(peer, &wire.Envelope{Body: &wire.Envelope_Rumor{Rumor: msg}}) {
			msg, recKeys, annKeys, bytes = nil, nil, nil, 0
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
		msg, recKeys, annKeys, bytes = nil, nil, nil, 0
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
		// A message is sized by what it carries: a whole record, or an
		// announcement of a large one (its key and version).
		announce := r.Size() > m.cfg.MaxInline
		size := r.Size()
		if announce {
			size = len(r.Key) + announceOverhead
		}
		if msg != nil && bytes+size > m.cfg.MaxMessageBytes {
			flush()
		}
		if msg == nil {
			msg = &wire.Rumor{Reply: reply, Feedback: m.cfg.Feedback}
		}
		h.announced = announce
		if announce {
			msg.Announces = append(msg.Announces, &wire.Announce{Key: r.Key, Hlc: r.Version.HLC, Node: r.Version.Node})
			annKeys = append(annKeys, k)
			m.stats.Announced++
		} else {
			msg.Records = append(msg.Records, wire.FromStore(r))
			recKeys = append(recKeys, k)
		}
		bytes += size
	}
	flush()
	return nil
}

// announceOverhead is the encoded size of an announcement beyond its key:
// version (two varints up to 10 bytes each) and field tags.
const announceOverhead = 24

// contact applies the loss-of-interest rule to one counted contact.
func (m *Monger) contact(k string) {
	h, ok := m.hot[k]
	if !ok {
		return
	}
	limit := m.cfg.K
	if h.announced {
		limit = m.cfg.AnnounceK
	}
	var lose bool
	if m.cfg.Coin {
		lose = m.rng.IntN(limit) == 0
	} else {
		h.counter++
		lose = h.counter >= limit
	}
	if lose && m.now.Before(h.keepUntil) {
		// Peers are still fetching the body from this node: a rumor
		// that dies now may leave them without a source that is still
		// spreading it. It loses interest at its next counted contact.
		return
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
// A rumor whose body is fetched stays hot at least until the fetch could
// time out.
func (m *Monger) Fetch(now time.Time, peer string, keys [][]byte) error {
	m.now = now
	var recs []*wire.Record
	for _, k := range keys {
		r, ok, err := m.st.Get(k)
		if err != nil {
			return fmt.Errorf("rumor: read %q for fetch: %w", k, err)
		}
		if ok {
			recs = append(recs, wire.FromStore(r))
			if h, hot := m.hot[string(k)]; hot && h.version == r.Version {
				h.keepUntil = now.Add(m.cfg.FetchTimeout)
			}
		}
	}
	if len(recs) > 0 && m.send(peer, &wire.Envelope{Body: &wire.Envelope_Rumor{Rumor: &wire.Rumor{Reply: true, Records: recs}}}) {
		m.stats.Served += uint64(len(recs))
	}
	return nil
}

// Want is an announced version this node lacks.
type Want struct {
	Key     []byte
	Version store.Version
}

// Announced handles announcements from peer of versions this node lacks:
// it asks peer for the bodies it is not fetching yet, and remembers peer as
// another source of those it is (asked if the fetch times out).
func (m *Monger) Announced(now time.Time, peer string, wants []Want) {
	m.now = now
	var keys [][]byte
	for _, w := range wants {
		k := string(w.Key)
		if f, ok := m.fetching[k]; ok && f.version.Compare(w.Version) >= 0 {
			if f.peer != peer && !slices.Contains(f.others, peer) && len(f.others) < maxAnnouncers {
				f.others = append(f.others, peer)
			}
			continue
		}
		if _, ok := m.fetching[k]; !ok && len(m.fetching) >= m.cfg.MaxFetching {
			continue
		}
		m.fetching[k] = &fetch{version: w.Version, peer: peer, deadline: now.Add(m.cfg.FetchTimeout), tries: 1}
		keys = append(keys, w.Key)
	}
	m.requestFetch(peer, keys)
	if len(m.fetching) > 0 {
		m.arm(now)
	}
}

// Received tells the monger that a record arrived (by any mechanism): a
// fetch of that version or an older one is over.
func (m *Monger) Received(key []byte, v store.Version) {
	if len(m.fetching) == 0 {
		return
	}
	if f, ok := m.fetching[string(key)]; ok && v.Compare(f.version) >= 0 {
		delete(m.fetching, string(key))
	}
}

// retryFetches asks again, of the next announcer (or of the same one when
// no other announced it), for the bodies that did not come in time, and
// gives up after maxFetchTries.
func (m *Monger) retryFetches(now time.Time) {
	if len(m.fetching) == 0 {
		return
	}
	var due []string
	for k, f := range m.fetching {
		if !now.Before(f.deadline) {
			due = append(due, k)
		}
	}
	slices.Sort(due) // map order is random; the simulator replays runs
	retry := map[string][][]byte{}
	var peers []string
	for _, k := range due {
		f := m.fetching[k]
		if r, ok, err := m.st.Get([]byte(k)); err == nil && ok && r.Version.Compare(f.version) >= 0 {
			delete(m.fetching, k) // it came by another path
			continue
		}
		if f.tries >= maxFetchTries {
			delete(m.fetching, k)
			m.stats.FetchFailed++
			continue
		}
		if len(f.others) > 0 {
			// The next announcer; the one that did not answer goes last.
			next := f.others[0]
			f.others = append(f.others[1:], f.peer)
			f.peer = next
		}
		f.tries++
		f.deadline = now.Add(m.cfg.FetchTimeout << (f.tries - 1))
		m.stats.FetchRetries++
		if _, ok := retry[f.peer]; !ok {
			peers = append(peers, f.peer)
		}
		retry[f.peer] = append(retry[f.peer], []byte(k))
	}
	for _, p := range peers {
		m.requestFetch(p, retry[p])
	}
}

// requestFetch asks peer for the bodies of announced rumors.
func (m *Monger) requestFetch(peer string, keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	if m.send(peer, &wire.Envelope{Body: &wire.Envelope_Fetch{Fetch: &wire.Fetch{Keys: keys}}}) {
		m.stats.Fetches++
	}
}
