// Package plumtree implements epidemic broadcast trees (Leitão, Pereira and
// Rodrigues, "Epidemic Broadcast Trees", SRDS 2007): a spanning tree
// embedded in the gossip overlay carries every update's body once to each
// node, and the links outside the tree carry only announcements, which
// repair the tree when it breaks.
//
// Each node splits the peers it gossips with into an eager set (tree
// links: new records are pushed there whole, GOSSIP) and a lazy set (they
// get the versions only, IHAVE). The tree forms and heals by four rules
// (§3 of the paper):
//
//   - a record received for the first time is delivered and forwarded,
//     and its sender joins the eager set;
//   - a message that brings nothing new makes the receiver move its sender
//     to the lazy set and answer PRUNE, so that the sender does the same:
//     of every redundant path, only the first to deliver stays eager;
//   - a version announced by a lazy peer whose body does not come within
//     GraftTimeout is asked for with GRAFT, which also makes the link
//     eager again: the tree grows back across the break;
//   - a peer declared dead or gone leaves both sets; the view is topped
//     up from the membership sampler when it runs short.
//
// The paper keeps the lazy links symmetric through HyParView's active
// view; here the view is drawn from the membership's uniform sampler (the
// same accessor rumor mongering uses), and a sender or announcer not yet
// in the view joins it, so the links become symmetric as traffic flows.
// Announcements go, per window, to every lazy peer as in the paper, or to
// LazyFanout of them drawn at random (the paper leaves the lazy-push
// policy open, §3.4), which bounds their cost whatever the view size at
// the price of reliability: a node the tree missed then hears of an
// update from about LazyFanout peers, and misses it with probability
// about e^-LazyFanout (anti-entropy repairs it).
//
// Eager pushes and announcements are batched: what a node delivers within
// EagerWindow leaves in one GOSSIP per eager peer, what it delivers within
// IHaveWindow in one IHAVE per chosen lazy peer. A record is named by its
// version, which its origin never issues twice.
//
// The package is pure: time and randomness come from the caller.
package plumtree

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// Config tunes the broadcast tree.
type Config struct {
	// Fanout is how many peers the eager set starts with, drawn at random
	// from the membership: the first broadcast floods along them and the
	// prunes cut the flood down to a tree. A larger fanout gives a
	// shallower tree (the first broadcast's breadth-first tree) with
	// busier inner nodes.
	Fanout int
	// MaxEager bounds the eager set: senders of new records and grafting
	// peers join it while it has room. 0 means 4*Fanout.
	MaxEager int
	// LazyPeers is how many peers the lazy set is topped up to, and
	// MaxLazy its bound (0: LazyPeers); announcers join it while it has
	// room, pruned peers push the oldest lazy peer out. Every lazy peer
	// costs one announcement per window, so the bound is the cost.
	LazyPeers int
	MaxLazy   int
	// LazyFanout is how many lazy peers, at random, each window's
	// announcements go to; 0 sends them to every lazy peer (the paper),
	// a negative value announces nothing (the tree and anti-entropy
	// alone).
	LazyFanout int
	// EagerWindow batches eager pushes: records delivered within it go in
	// one GOSSIP per eager peer. 0 pushes at the next Tick (the records
	// of one batch of inputs together).
	EagerWindow time.Duration
	// IHaveWindow batches announcements.
	IHaveWindow time.Duration
	// GraftTimeout is how long an announced version may stay missing
	// before it is grafted, and then between grafts to the next
	// announcer. It should exceed the spread of arrival times along the
	// tree, or a node grafts what is on its way.
	GraftTimeout time.Duration
	// PruneAfter is how many GOSSIP messages in a row from an eager peer
	// must bring nothing new before the link is pruned. The paper prunes
	// at the first (1). With several sources broadcasting at once, a link
	// redundant for one update may be the first path of another, and
	// prunes of two links of one cycle that cross cut the tree (until
	// grafts mend it); a larger value keeps a link that still delivers
	// now and then, for some duplicates. 0 means 1.
	PruneAfter int
	// MaxGraftTries is how many grafts a missing version gets before it is
	// left to anti-entropy.
	MaxGraftTries int
	// MaxSeen bounds the cache of versions received (the message ids of
	// the paper, and the keys to serve grafts with); the oldest is
	// forgotten first. A version announced after it was forgotten is
	// grafted once for nothing.
	MaxSeen int
	// MaxMissing bounds the versions announced and not received; beyond
	// it announcements are ignored (and counted): anti-entropy repairs.
	MaxMissing int
	// MaxQueue bounds the records waiting for the eager window, and the
	// versions waiting for the announcement window, and the versions one
	// IHAVE or GRAFT may name; beyond it they are dropped (and counted).
	MaxQueue int
	// MaxMessageBytes caps the record bytes of one GOSSIP; more are split.
	MaxMessageBytes int
	// RefreshInterval is how often, at most, a view of fewer than
	// Fanout+LazyPeers peers, or without an eager peer, is topped up from
	// the membership.
	RefreshInterval time.Duration
}

// DefaultConfig returns a tree for a LAN cluster: fanout 4 and 8 lazy
// peers (a node is in no other node's view with probability about e^-12,
// the views being drawn uniformly), announcements every 100 ms to all of them,
// grafts after 1 s (well above the spread of arrival times along a tree
// of a few hops on a LAN, even on a loaded machine: a graft of what is on
// its way costs a copy and reshapes the tree).
func DefaultConfig() Config {
	return Config{
		Fanout:          4,
		LazyPeers:       8,
		LazyFanout:      0,
		IHaveWindow:     100 * time.Millisecond,
		GraftTimeout:    time.Second,
		MaxGraftTries:   4,
		PruneAfter:      1,
		MaxSeen:         100_000,
		MaxMissing:      10_000,
		MaxQueue:        10_000,
		MaxMessageBytes: 64 << 10,
		RefreshInterval: time.Second,
	}
}

// Stats counts what the tree did.
type Stats struct {
	Gossips        uint64 // GOSSIP messages sent (pushes and graft answers)
	GossipRecords  uint64 // records carried by them
	IHaves         uint64 // IHAVE messages sent
	IHaveIDs       uint64 // versions announced by them
	Prunes         uint64 // PRUNE sent
	Grafts         uint64 // GRAFT sent
	GraftIDs       uint64 // versions asked for by them
	Served         uint64 // records sent in answer to grafts
	Delivered      uint64 // records new to this node, received by GOSSIP
	Duplicates     uint64 // GOSSIP messages that brought nothing new
	PrunedBy       uint64 // PRUNE received
	GraftedBy      uint64 // GRAFT received
	GraftFailed    uint64 // missing versions left to anti-entropy after MaxGraftTries
	DroppedQueue   uint64 // records or versions dropped for MaxQueue
	DroppedMissing uint64 // announcements ignored for MaxMissing
	Eager          int    // eager peers now
	Lazy           int    // lazy peers now
	Missing        int    // versions announced and not received now
	Seen           int    // versions in the seen cache now
	Queued         int    // records and versions waiting for their window now
}

// Sampler picks up to k distinct live peers uniformly at random.
type Sampler func(rng *rand.Rand, k int) []string

// SendFunc hands a message to the caller for the named peer; false if the
// peer cannot be addressed.
type SendFunc func(peer string, env *wire.Envelope) bool

// queued is a record (or a version) delivered here, waiting for its
// window, with the peer it came from (not sent back there).
type queued struct {
	rec  store.Record
	from string
}

// missing is a version announced and not received.
type missing struct {
	announcers []string // in the order heard; the next graft goes to the first
	deadline   time.Time
	tries      int
}

// maxAnnouncers bounds missing.announcers.
const maxAnnouncers = 4

// Tree is one node's broadcast-tree state. It is not safe for concurrent
// use.
type Tree struct {
	cfg    Config
	st     store.Store
	rng    *rand.Rand
	sample Sampler
	send   SendFunc

	eager, lazy []string // small (MaxEager, MaxLazy): slices keep iteration deterministic
	// dups counts, per eager peer, the GOSSIP messages in a row that
	// brought nothing new (see PruneAfter); its keys are eager peers.
	dups      map[string]int
	drawn     bool // the view was drawn from the sampler once
	refreshAt time.Time

	push      []queued // records for the eager peers
	pushSince time.Time
	ann       []queued // versions for the lazy peers (rec holds key and version only)
	annSince  time.Time

	seen      map[store.Version]string // version -> key
	seenOrder []store.Version          // FIFO of seen, for the bound
	seenHead  int

	missing   map[store.Version]*missing
	nextGraft time.Time // earliest missing deadline (zero: none)

	stats Stats
}

// New returns a tree with an empty view; it is drawn from sample when the
// first message is to leave.
func New(cfg Config, st store.Store, rng *rand.Rand, sample Sampler, send SendFunc) *Tree {
	if cfg.Fanout < 1 {
		cfg.Fanout = 1
	}
	if cfg.MaxEager < cfg.Fanout {
		cfg.MaxEager = 4 * cfg.Fanout
	}
	if cfg.LazyPeers < cfg.LazyFanout {
		cfg.LazyPeers = cfg.LazyFanout
	}
	if cfg.MaxLazy < cfg.LazyPeers {
		cfg.MaxLazy = max(cfg.LazyPeers, 1)
	}
	d := DefaultConfig()
	if cfg.GraftTimeout <= 0 {
		cfg.GraftTimeout = d.GraftTimeout
	}
	if cfg.PruneAfter < 1 {
		cfg.PruneAfter = 1
	}
	if cfg.MaxGraftTries < 1 {
		cfg.MaxGraftTries = 1
	}
	if cfg.MaxSeen < 1 {
		cfg.MaxSeen = d.MaxSeen
	}
	if cfg.MaxMissing < 1 {
		cfg.MaxMissing = d.MaxMissing
	}
	if cfg.MaxQueue < 1 {
		cfg.MaxQueue = d.MaxQueue
	}
	if cfg.MaxMessageBytes < 1 {
		cfg.MaxMessageBytes = d.MaxMessageBytes
	}
	return &Tree{cfg: cfg, st: st, rng: rng, sample: sample, send: send,
		seen: map[store.Version]string{}, missing: map[store.Version]*missing{}, dups: map[string]int{}}
}

// Stats returns the counters.
func (t *Tree) Stats() Stats {
	s := t.stats
	s.Eager, s.Lazy = len(t.eager), len(t.lazy)
	s.Missing, s.Seen = len(t.missing), len(t.seen)
	s.Queued = len(t.push) + len(t.ann)
	return s
}

// Eager returns the eager peers, in the order they joined the set.
func (t *Tree) Eager() []string { return slices.Clone(t.eager) }

// Lazy returns the lazy peers, in the order they joined the set.
func (t *Tree) Lazy() []string { return slices.Clone(t.lazy) }

// Add hands a local write (or a record this node should spread, such as an
// anti-entropy repair) to the tree: it is pushed to every eager peer and
// announced to lazy ones.
func (t *Tree) Add(now time.Time, r store.Record) { t.deliver(now, "", r) }

// Received tells the tree that this node holds a version, however it came
// (direct mail, rumor, anti-entropy, a GOSSIP that was not new): its
// announcements need no graft.
func (t *Tree) Received(key []byte, v store.Version) {
	t.remember(string(key), v)
	delete(t.missing, v)
}

// Gossip handles a GOSSIP from peer, whose records the caller has merged:
// changed[i] tells whether records[i] was new here, held[i] whether this
// node now holds it (new, or a duplicate; false for a refused record).
// New records are forwarded; a message that brought nothing new prunes
// the link.
func (t *Tree) Gossip(now time.Time, peer string, reply bool, records []store.Record, changed, held []bool) {
	fresh := false
	for i, r := range records {
		switch {
		case changed[i]:
			fresh = true
			t.stats.Delivered++
			t.deliver(now, peer, r)
		case held[i]:
			t.Received(r.Key, r.Version)
		}
	}
	if fresh {
		delete(t.dups, peer)
		// The first delivery of a record marks the link it came by as a
		// tree link (the paper's eagerPushPeers ∪ {sender}), unless this
		// node made it lazy: then the push crossed this node's PRUNE,
		// and the sender is about to stop. Making the link eager again
		// would leave it eager on this side only, and the records
		// forwarded over it would make other tree links prune this node
		// away. A lazy link becomes eager by GRAFT.
		if !slices.Contains(t.lazy, peer) {
			t.makeEager(peer)
		}
		return
	}
	if reply || !slices.Contains(held, true) {
		// A graft answer that lost a race with the tree, or records this
		// node refused: neither says the link is redundant.
		return
	}
	if len(t.eager) == 1 && t.eager[0] == peer {
		// The last tree link: with several sources broadcasting at once,
		// prunes of different links of one cycle can cross and cut a node
		// off, to live on grafts alone. Keep it; a duplicate now and then
		// costs less.
		t.stats.Duplicates++
		return
	}
	t.stats.Duplicates++
	if slices.Contains(t.eager, peer) {
		if t.dups[peer]++; t.dups[peer] < t.cfg.PruneAfter {
			return
		}
	}
	t.makeLazy(peer)
	if t.send(peer, &wire.Envelope{Body: &wire.Envelope_PlumPrune{PlumPrune: &wire.PlumPrune{}}}) {
		t.stats.Prunes++
	}
}

// deliver queues a record new to this node for the eager push and its
// version for the announcements.
func (t *Tree) deliver(now time.Time, from string, r store.Record) {
	t.Received(r.Key, r.Version)
	if len(t.push) >= t.cfg.MaxQueue {
		t.stats.DroppedQueue++
	} else {
		if len(t.push) == 0 {
			t.pushSince = now
		}
		t.push = append(t.push, queued{rec: r, from: from})
	}
	if t.cfg.LazyFanout < 0 {
		return
	}
	if len(t.ann) >= t.cfg.MaxQueue {
		t.stats.DroppedQueue++
		return
	}
	if len(t.ann) == 0 {
		t.annSince = now
	}
	t.ann = append(t.ann, queued{rec: store.Record{Key: r.Key, Version: r.Version}, from: from})
}

// remember puts a version in the seen cache, forgetting the oldest beyond
// MaxSeen.
func (t *Tree) remember(key string, v store.Version) {
	if _, ok := t.seen[v]; ok {
		return
	}
	if len(t.seenOrder) < t.cfg.MaxSeen {
		t.seenOrder = append(t.seenOrder, v)
	} else {
		delete(t.seen, t.seenOrder[t.seenHead])
		t.seenOrder[t.seenHead] = v
		t.seenHead = (t.seenHead + 1) % len(t.seenOrder)
	}
	t.seen[v] = key
}

// IHave handles announcements from peer: the versions this node has not
// seen are awaited, and grafted if they do not come in time.
func (t *Tree) IHave(now time.Time, peer string, ids []*wire.PlumIDs) {
	t.addLazy(peer)
	for _, v := range t.decode(ids) {
		if _, ok := t.seen[v]; ok {
			continue
		}
		if m, ok := t.missing[v]; ok {
			if !slices.Contains(m.announcers, peer) && len(m.announcers) < maxAnnouncers {
				m.announcers = append(m.announcers, peer)
			}
			continue
		}
		if len(t.missing) >= t.cfg.MaxMissing {
			t.stats.DroppedMissing++
			continue
		}
		d := now.Add(t.cfg.GraftTimeout)
		t.missing[v] = &missing{announcers: []string{peer}, deadline: d}
		if t.nextGraft.IsZero() || d.Before(t.nextGraft) {
			t.nextGraft = d
		}
	}
}

// Prune handles a PRUNE from peer: it got what this node pushed by another
// path first, so the link leaves the tree.
func (t *Tree) Prune(peer string) {
	t.stats.PrunedBy++
	t.makeLazy(peer)
}

// Graft handles a GRAFT from peer: the link joins the tree, and the
// records named are sent (their current versions, which may be newer).
func (t *Tree) Graft(now time.Time, peer string, ids []*wire.PlumIDs) error {
	t.stats.GraftedBy++
	t.makeEager(peer)
	var recs []*wire.Record
	bytes := 0
	flush := func() {
		if len(recs) > 0 && t.send(peer, &wire.Envelope{Body: &wire.Envelope_PlumGossip{PlumGossip: &wire.PlumGossip{Records: recs, Reply: true}}}) {
			t.stats.Gossips++
			t.stats.GossipRecords += uint64(len(recs))
			t.stats.Served += uint64(len(recs))
		}
		recs, bytes = nil, 0
	}
	done := map[string]bool{}
	for _, v := range t.decode(ids) {
		k, ok := t.seen[v]
		if !ok || done[k] {
			continue
		}
		done[k] = true
		r, found, err := t.st.Get([]byte(k))
		if err != nil {
			return fmt.Errorf("plumtree: read %q for graft: %w", k, err)
		}
		if !found || r.Version.Compare(v) < 0 {
			continue
		}
		if len(recs) > 0 && bytes+r.Size() > t.cfg.MaxMessageBytes {
			flush()
		}
		recs = append(recs, wire.FromStore(r))
		bytes += r.Size()
	}
	flush()
	return nil
}

// PeerDown removes a peer declared dead or gone from the view and from the
// announcers of missing versions.
func (t *Tree) PeerDown(peer string) {
	t.eager = remove(t.eager, peer)
	delete(t.dups, peer)
	t.lazy = remove(t.lazy, peer)
	for _, m := range t.missing {
		m.announcers = remove(m.announcers, peer)
	}
}

// PeerUp offers a peer that joined (or came back) to the lazy set, if the
// view is short: a new member gets announcements, and grafts
// into the tree on the first one it lacks.
func (t *Tree) PeerUp(peer string) {
	// Before the view is drawn, the members that join first would fill
	// every node's lazy set alike; the draw samples uniformly instead.
	if t.drawn && len(t.eager)+len(t.lazy) < t.cfg.Fanout+t.cfg.LazyPeers {
		t.addLazy(peer)
	}
}

// Deadline returns when Tick next has work: a window closing or a graft
// due; the zero time if none.
func (t *Tree) Deadline() time.Time {
	var d time.Time
	if len(t.push) > 0 {
		d = t.pushSince.Add(t.cfg.EagerWindow)
	}
	if len(t.ann) > 0 {
		d = earliest(d, t.annSince.Add(t.cfg.IHaveWindow))
	}
	if len(t.missing) > 0 {
		d = earliest(d, t.nextGraft)
	}
	return d
}

// Tick closes the windows that are due and grafts the versions that did
// not come in time.
func (t *Tree) Tick(now time.Time) {
	if len(t.push) > 0 && !now.Before(t.pushSince.Add(t.cfg.EagerWindow)) {
		t.refresh(now)
		t.flushPush()
	}
	if len(t.ann) > 0 && !now.Before(t.annSince.Add(t.cfg.IHaveWindow)) {
		t.refresh(now)
		t.flushAnnounce()
	}
	if len(t.missing) > 0 && !now.Before(t.nextGraft) {
		t.graftDue(now)
	}
}

// refresh tops the view up from the sampler, at most every
// RefreshInterval, when it holds fewer than Fanout+LazyPeers peers. New
// peers are lazy, unless this node draws its view for the first time or
// has no eager peer left (its tree links died): then the first Fanout are
// eager, and the next
// broadcast floods along them and is pruned back to a tree. Topping up
// the eager set after every prune would undo the tree.
func (t *Tree) refresh(now time.Time) {
	want := t.cfg.Fanout + t.cfg.LazyPeers
	if t.drawn && len(t.eager) > 0 && len(t.eager)+len(t.lazy) >= want {
		return
	}
	if !t.refreshAt.IsZero() && now.Before(t.refreshAt) {
		return
	}
	t.refreshAt = now.Add(t.cfg.RefreshInterval)
	flood := !t.drawn || len(t.eager) == 0
	t.drawn = true
	for _, p := range t.sample(t.rng, want+len(t.eager)+len(t.lazy)) {
		if slices.Contains(t.eager, p) || slices.Contains(t.lazy, p) {
			continue
		}
		switch {
		case flood && len(t.eager) < t.cfg.Fanout:
			t.eager = append(t.eager, p)
		case len(t.eager)+len(t.lazy) < want && len(t.lazy) < t.cfg.MaxLazy:
			t.lazy = append(t.lazy, p)
		}
	}
}

// flushPush sends the queued records to every eager peer but the one each
// came from.
func (t *Tree) flushPush() {
	q := t.push
	t.push = nil
	for _, p := range slices.Clone(t.eager) {
		var recs []*wire.Record
		bytes := 0
		for _, e := range q {
			if e.from == p {
				continue
			}
			if len(recs) > 0 && bytes+e.rec.Size() > t.cfg.MaxMessageBytes {
				t.sendGossip(p, recs)
				recs, bytes = nil, 0
			}
			recs = append(recs, wire.FromStore(e.rec))
			bytes += e.rec.Size()
		}
		t.sendGossip(p, recs)
	}
}

func (t *Tree) sendGossip(peer string, recs []*wire.Record) {
	if len(recs) == 0 {
		return
	}
	if !t.send(peer, &wire.Envelope{Body: &wire.Envelope_PlumGossip{PlumGossip: &wire.PlumGossip{Records: recs}}}) {
		t.PeerDown(peer) // no address: not a member any more
		return
	}
	t.stats.Gossips++
	t.stats.GossipRecords += uint64(len(recs))
}

// flushAnnounce sends the queued versions to the lazy peers (LazyFanout
// of them at random, if set), each without the versions it sent this node.
func (t *Tree) flushAnnounce() {
	q := t.ann
	t.ann = nil
	peers := slices.Clone(t.lazy)
	if t.cfg.LazyFanout > 0 {
		t.rng.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		peers = peers[:min(len(peers), t.cfg.LazyFanout)]
	}
	for _, p := range peers {
		var vs []store.Version
		for _, e := range q {
			if e.from != p {
				vs = append(vs, e.rec.Version)
			}
		}
		if len(vs) == 0 {
			continue
		}
		if !t.send(p, &wire.Envelope{Body: &wire.Envelope_PlumIhave{PlumIhave: &wire.PlumIHave{Ids: encode(vs)}}}) {
			t.PeerDown(p)
			continue
		}
		t.stats.IHaves++
		t.stats.IHaveIDs += uint64(len(vs))
	}
}

// graftDue grafts the missing versions whose time has come, one GRAFT per
// announcer asked, and gives up on those grafted MaxGraftTries times.
func (t *Tree) graftDue(now time.Time) {
	var due []store.Version
	t.nextGraft = time.Time{}
	for v, m := range t.missing {
		if now.Before(m.deadline) {
			if t.nextGraft.IsZero() || m.deadline.Before(t.nextGraft) {
				t.nextGraft = m.deadline
			}
			continue
		}
		due = append(due, v)
	}
	slices.SortFunc(due, func(a, b store.Version) int { return a.Compare(b) }) // map order is random; the simulator replays runs
	byPeer := map[string][]store.Version{}
	var peers []string
	for _, v := range due {
		m := t.missing[v]
		if m.tries >= t.cfg.MaxGraftTries || len(m.announcers) == 0 {
			delete(t.missing, v)
			t.stats.GraftFailed++
			continue
		}
		// Ask the first announcer; it goes last for the next try.
		p := m.announcers[0]
		m.announcers = append(m.announcers[1:], p)
		m.tries++
		m.deadline = now.Add(t.cfg.GraftTimeout)
		if t.nextGraft.IsZero() || m.deadline.Before(t.nextGraft) {
			t.nextGraft = m.deadline
		}
		if _, ok := byPeer[p]; !ok {
			peers = append(peers, p)
		}
		byPeer[p] = append(byPeer[p], v)
	}
	for _, p := range peers {
		vs := byPeer[p]
		if len(vs) > t.cfg.MaxQueue {
			vs = vs[:t.cfg.MaxQueue]
		}
		if !t.send(p, &wire.Envelope{Body: &wire.Envelope_PlumGraft{PlumGraft: &wire.PlumGraft{Ids: encode(vs)}}}) {
			t.PeerDown(p)
			continue
		}
		t.makeEager(p)
		t.stats.Grafts++
		t.stats.GraftIDs += uint64(len(vs))
	}
}

// makeEager moves peer to the eager set, if it has room.
func (t *Tree) makeEager(peer string) {
	if peer == "" || slices.Contains(t.eager, peer) {
		return
	}
	if len(t.eager) >= t.cfg.MaxEager {
		t.addLazy(peer)
		return
	}
	t.lazy = remove(t.lazy, peer)
	t.eager = append(t.eager, peer)
}

// makeLazy moves peer to the lazy set (it stays known, for
// announcements, even when the lazy set is full).
func (t *Tree) makeLazy(peer string) {
	t.eager = remove(t.eager, peer)
	delete(t.dups, peer)
	if !slices.Contains(t.lazy, peer) {
		if len(t.lazy) >= t.cfg.MaxLazy {
			t.lazy = t.lazy[1:] // the oldest lazy link makes room
		}
		t.lazy = append(t.lazy, peer)
	}
}

// addLazy adds an unknown peer to the lazy set while it has room.
func (t *Tree) addLazy(peer string) {
	if peer == "" || slices.Contains(t.eager, peer) || slices.Contains(t.lazy, peer) || len(t.lazy) >= t.cfg.MaxLazy {
		return
	}
	t.lazy = append(t.lazy, peer)
}

// decode expands PlumIDs into versions, at most MaxQueue of them: a
// message that names more is cut there.
func (t *Tree) decode(ids []*wire.PlumIDs) []store.Version {
	var out []store.Version
	for _, g := range ids {
		var hlc uint64
		for i, d := range g.GetHlcDeltas() {
			if len(out) >= t.cfg.MaxQueue {
				t.stats.DroppedQueue++
				return out
			}
			if i == 0 {
				hlc = d
			} else {
				hlc += d // a wrap only names a version nobody has
			}
			out = append(out, store.Version{HLC: hlc, Node: g.GetNode()})
		}
	}
	return out
}

// encode groups versions by origin node, hlc ascending and delta-coded.
func encode(vs []store.Version) []*wire.PlumIDs {
	vs = slices.Clone(vs)
	slices.SortFunc(vs, func(a, b store.Version) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.HLC, b.HLC))
	})
	vs = slices.Compact(vs)
	var out []*wire.PlumIDs
	var prev uint64
	for _, v := range vs {
		if len(out) == 0 || out[len(out)-1].Node != v.Node {
			out = append(out, &wire.PlumIDs{Node: v.Node, HlcDeltas: []uint64{v.HLC}})
		} else {
			g := out[len(out)-1]
			g.HlcDeltas = append(g.HlcDeltas, v.HLC-prev)
		}
		prev = v.HLC
	}
	return out
}

func remove(s []string, x string) []string {
	if i := slices.Index(s, x); i >= 0 {
		return slices.Delete(s, i, i+1)
	}
	return s
}

// earliest returns the earlier of two deadlines, the zero time meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
