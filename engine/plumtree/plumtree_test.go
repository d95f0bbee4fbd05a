package plumtree

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// net is a small network of trees over memstores, with a fixed link
// latency, driven by virtual time: the engine's role (merging records
// into the store, then telling the tree) is played by deliver.
type net struct {
	t       *testing.T
	now     time.Time
	latency time.Duration
	names   []string
	nodes   map[string]*node
	queue   msgQueue
	seq     int
	// drop, if set, loses the messages it returns true for.
	drop func(from, to string, env *wire.Envelope) bool
	dead map[string]bool
	sent map[string]int // by envelope kind
}

type node struct {
	name string
	tree *Tree
	st   *memstore.Store
}

type msg struct {
	at       time.Time
	seq      int
	from, to string
	env      *wire.Envelope
}

type msgQueue []msg

func (q msgQueue) Len() int { return len(q) }
func (q msgQueue) Less(i, j int) bool {
	return q[i].at.Before(q[j].at) || (q[i].at.Equal(q[j].at) && q[i].seq < q[j].seq)
}
func (q msgQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *msgQueue) Push(x any)   { *q = append(*q, x.(msg)) }
func (q *msgQueue) Pop() any {
	old := *q
	m := old[len(old)-1]
	*q = old[:len(old)-1]
	return m
}

func newNet(t *testing.T, n int, cfg Config) *net {
	t.Helper()
	w := &net{t: t, now: t0, latency: 10 * time.Millisecond, nodes: map[string]*node{}, dead: map[string]bool{}, sent: map[string]int{}}
	for i := range n {
		w.names = append(w.names, fmt.Sprintf("n%02d", i))
	}
	for i, name := range w.names {
		nd := &node{name: name, st: memstore.New()}
		// Peers drawn uniformly at random among the live others, as the
		// membership's sampler does.
		sample := func(rng *rand.Rand, k int) []string {
			var out []string
			for _, p := range w.names {
				if p != name && !w.dead[p] {
					out = append(out, p)
				}
			}
			rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
			return out[:min(k, len(out))]
		}
		send := func(peer string, env *wire.Envelope) bool {
			if _, ok := w.nodes[peer]; !ok {
				return false
			}
			w.sent[env.Kind()]++
			w.seq++
			heap.Push(&w.queue, msg{at: w.now.Add(w.latency), seq: w.seq, from: name, to: peer, env: env})
			return true
		}
		nd.tree = New(cfg, nd.st, rand.New(rand.NewPCG(uint64(i), 7)), sample, send)
		w.nodes[name] = nd
	}
	return w
}

// write makes a local write at node from and hands it to its tree.
func (w *net) write(from string, key string, hlc uint64) store.Record {
	w.t.Helper()
	nd := w.nodes[from]
	r := store.Record{Key: []byte(key), Value: []byte("value of " + key), Version: store.Version{HLC: hlc, Node: uint64(slices.Index(w.names, from) + 1)}}
	if _, err := nd.st.Apply([]store.Record{r}); err != nil {
		w.t.Fatal(err)
	}
	nd.tree.Add(w.now, r)
	return r
}

// run advances virtual time, delivering messages and running timers,
// until nothing is left to do or until the limit.
func (w *net) run(limit time.Time) {
	w.t.Helper()
	for {
		next := time.Time{}
		for _, name := range w.names {
			if !w.dead[name] {
				next = earliest(next, w.nodes[name].tree.Deadline())
			}
		}
		if len(w.queue) > 0 {
			next = earliest(next, w.queue[0].at)
		}
		if next.IsZero() || next.After(limit) {
			return
		}
		if next.After(w.now) {
			w.now = next
		}
		for len(w.queue) > 0 && !w.queue[0].at.After(w.now) {
			m := heap.Pop(&w.queue).(msg)
			if w.dead[m.to] || (w.drop != nil && w.drop(m.from, m.to, m.env)) {
				continue
			}
			w.deliver(m)
		}
		for _, name := range w.names {
			if !w.dead[name] {
				w.nodes[name].tree.Tick(w.now)
			}
		}
	}
}

// deliver does what the engine does with a received message.
func (w *net) deliver(m msg) {
	w.t.Helper()
	nd := w.nodes[m.to]
	switch b := m.env.Body.(type) {
	case *wire.Envelope_PlumGossip:
		recs := make([]store.Record, len(b.PlumGossip.Records))
		for i, r := range b.PlumGossip.Records {
			recs[i] = r.Store()
		}
		changed, err := nd.st.Apply(recs)
		if err != nil {
			w.t.Fatal(err)
		}
		held := make([]bool, len(recs))
		for i := range held {
			held[i] = true
		}
		nd.tree.Gossip(w.now, m.from, b.PlumGossip.Reply, recs, changed, held)
	case *wire.Envelope_PlumIhave:
		nd.tree.IHave(w.now, m.from, b.PlumIhave.Ids)
	case *wire.Envelope_PlumPrune:
		nd.tree.Prune(m.from)
	case *wire.Envelope_PlumGraft:
		if err := nd.tree.Graft(w.now, m.from, b.PlumGraft.Ids); err != nil {
			w.t.Fatal(err)
		}
	default:
		w.t.Fatalf("unexpected message %s", m.env.Kind())
	}
}

// missing returns the live nodes that lack key.
func (w *net) missing(key string) []string {
	w.t.Helper()
	var out []string
	for _, name := range w.names {
		if w.dead[name] {
			continue
		}
		if _, ok, err := w.nodes[name].st.Get([]byte(key)); err != nil {
			w.t.Fatal(err)
		} else if !ok {
			out = append(out, name)
		}
	}
	return out
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Fanout = 3
	cfg.LazyPeers = 6
	cfg.LazyFanout = 2
	cfg.IHaveWindow = 50 * time.Millisecond
	cfg.GraftTimeout = 300 * time.Millisecond
	return cfg
}

// The first broadcast floods the random eager links; the prunes cut them
// down to a spanning tree, over which later broadcasts cost exactly one
// GOSSIP per node and no prune.
func TestTreeForms(t *testing.T) {
	const n = 30
	w := newNet(t, n, testConfig())
	for i := range 40 {
		if i == 30 {
			w.sent = map[string]int{}
		}
		key := fmt.Sprintf("k%d", i)
		w.write("n00", key, uint64(i+1))
		w.run(w.now.Add(2 * time.Second))
		if m := w.missing(key); len(m) > 0 {
			t.Fatalf("update %d: missed by %v", i, m)
		}
	}
	if got, want := w.sent["plum_gossip"], 10*(n-1); got != want {
		t.Errorf("last 10 updates: %d GOSSIP messages, want %d (one per node per update along a tree)", got, want)
	}
	if w.sent["plum_prune"] != 0 || w.sent["plum_graft"] != 0 {
		t.Errorf("last 10 updates: %d prunes, %d grafts: the tree should be stable", w.sent["plum_prune"], w.sent["plum_graft"])
	}
	var prunes uint64
	for _, nd := range w.nodes {
		prunes += nd.tree.Stats().Prunes
	}
	if prunes == 0 {
		t.Error("no prune at all: the first flood should have been cut down")
	}
}

// Two paths to the same node: the second copy is pruned on both sides.
func TestDuplicatePruned(t *testing.T) {
	cfg := testConfig()
	cfg.Fanout = 2 // each of the three sees both others as eager
	w := newNet(t, 3, cfg)
	w.write("n00", "k", 1)
	w.run(w.now.Add(time.Second))
	if m := w.missing("k"); len(m) > 0 {
		t.Fatalf("missed by %v", m)
	}
	// n01 and n02 both got k from n00 first, then forwarded it to each
	// other: each pruned the other.
	for _, name := range []string{"n01", "n02"} {
		tr := w.nodes[name].tree
		if got := tr.Eager(); !slices.Equal(got, []string{"n00"}) {
			t.Errorf("%s eager = %v, want [n00]", name, got)
		}
		if s := tr.Stats(); s.Duplicates != 1 || s.Prunes != 1 || s.PrunedBy != 1 {
			t.Errorf("%s: duplicates %d, prunes sent %d, received %d, want 1 each", name, s.Duplicates, s.Prunes, s.PrunedBy)
		}
	}
	// The next broadcast costs two GOSSIPs.
	w.sent = map[string]int{}
	w.write("n00", "k2", 2)
	w.run(w.now.Add(time.Second))
	if w.sent["plum_gossip"] != 2 || len(w.missing("k2")) > 0 {
		t.Errorf("second broadcast: %d GOSSIP, missed by %v; want 2 and none", w.sent["plum_gossip"], w.missing("k2"))
	}
}

// A lost eager push is repaired by a graft to a peer that announced the
// version, and the graft makes that link a tree link.
func TestGraftRepairsLostPush(t *testing.T) {
	const n = 12
	cfg := testConfig()
	w := newNet(t, n, cfg)
	for i := range 10 { // let the tree form
		w.write("n00", fmt.Sprintf("warm%d", i), uint64(i+1))
		w.run(w.now.Add(2 * time.Second))
	}
	// Lose every GOSSIP of the next update addressed to n05.
	w.drop = func(_, to string, env *wire.Envelope) bool {
		return to == "n05" && env.GetPlumGossip() != nil && !env.GetPlumGossip().Reply
	}
	start := w.now
	w.write("n00", "lost", 100)
	w.run(w.now.Add(cfg.GraftTimeout / 2))
	if m := w.missing("lost"); !slices.Contains(m, "n05") {
		// (and the nodes below n05 in the tree)
		t.Fatalf("before the graft timeout, missing at %v, want n05 among them", m)
	}
	w.run(w.now.Add(5 * time.Second))
	if m := w.missing("lost"); len(m) > 0 {
		t.Fatalf("after grafts, missing at %v", m)
	}
	s := w.nodes["n05"].tree.Stats()
	if s.Grafts == 0 || s.Missing != 0 {
		t.Fatalf("n05: %d grafts, %d missing; want a graft and nothing missing", s.Grafts, s.Missing)
	}
	if w.now.Sub(start) < cfg.GraftTimeout {
		t.Errorf("repaired %v after the write, before the graft timeout %v", w.now.Sub(start), cfg.GraftTimeout)
	}
	// The grafted peer pushes to n05 eagerly now: with the loss over, the
	// next update reaches n05 without a graft.
	w.drop = nil
	grafts := s.Grafts
	w.write("n00", "after", 101)
	w.run(w.now.Add(5 * time.Second))
	if m := w.missing("after"); len(m) > 0 {
		t.Fatalf("after the repair, missing at %v", m)
	}
	if got := w.nodes["n05"].tree.Stats().Grafts; got != grafts {
		t.Errorf("n05 grafted %d more times; the repaired tree should carry the next update", got-grafts)
	}
}

// A dead eager peer is dropped from the view; the nodes below it in the
// tree graft to others and every live node keeps getting every update.
func TestDeadEagerPeerReplaced(t *testing.T) {
	const n = 16
	w := newNet(t, n, testConfig())
	for i := range 10 {
		w.write("n00", fmt.Sprintf("warm%d", i), uint64(i+1))
		w.run(w.now.Add(2 * time.Second))
	}
	// Kill the eager peer of n00 with the most eager peers of its own: an
	// inner node of the tree.
	victim, most := "", -1
	for _, p := range w.nodes["n00"].tree.Eager() {
		if k := len(w.nodes[p].tree.Eager()); k > most {
			victim, most = p, k
		}
	}
	w.dead[victim] = true
	for i := 0; i < 5; i++ {
		key := fmt.Sprintf("after%d", i)
		w.write("n00", key, uint64(100+i))
		w.run(w.now.Add(5 * time.Second))
		if m := w.missing(key); len(m) > 0 {
			t.Fatalf("update %d after %s died: missing at %v", i, victim, m)
		}
		if i == 0 {
			// Membership declares it dead.
			for _, name := range w.names {
				if !w.dead[name] {
					w.nodes[name].tree.PeerDown(victim)
				}
			}
		}
	}
	for _, name := range w.names {
		if w.dead[name] {
			continue
		}
		tr := w.nodes[name].tree
		if slices.Contains(tr.Eager(), victim) || slices.Contains(tr.Lazy(), victim) {
			t.Errorf("%s still has %s in its view", name, victim)
		}
	}
	if len(w.nodes["n00"].tree.Eager()) == 0 {
		t.Error("n00 has no eager peer left")
	}
	// With the dead peer gone from every view, the repaired tree carries
	// updates without grafts.
	w.sent = map[string]int{}
	w.write("n00", "settled", 200)
	w.run(w.now.Add(5 * time.Second))
	if m := w.missing("settled"); len(m) > 0 || w.sent["plum_graft"] > 0 {
		t.Errorf("settled: missing at %v, %d grafts; want none", m, w.sent["plum_graft"])
	}
}

// Records from several origins at once, with messages lost at random:
// grafts and the tree get every update everywhere.
func TestManySourcesWithLoss(t *testing.T) {
	const n = 20
	w := newNet(t, n, testConfig())
	rng := rand.New(rand.NewPCG(3, 4))
	w.drop = func(_, _ string, env *wire.Envelope) bool { return rng.Float64() < 0.05 }
	var keys []string
	for i := range 60 {
		from := w.names[rng.IntN(n)]
		key := fmt.Sprintf("k%d", i)
		keys = append(keys, key)
		w.write(from, key, uint64(i+1))
		w.run(w.now.Add(20 * time.Millisecond))
	}
	w.run(w.now.Add(20 * time.Second))
	missed := 0
	for _, k := range keys {
		missed += len(w.missing(k))
	}
	// A version whose GOSSIP and every announcement were all lost is
	// anti-entropy's to repair: a node the tree missed hears of a version
	// from about LazyFanout announcers, so about e^-2 of the 5% lost
	// pushes are not repaired here.
	if missed*50 > n*len(keys) {
		t.Errorf("%d (node, update) pairs missed of %d", missed, n*len(keys))
	}
	var grafts uint64
	for _, nd := range w.nodes {
		grafts += nd.tree.Stats().Grafts
	}
	if grafts == 0 {
		t.Error("no graft with 5% loss")
	}
}

// Windows batch: records delivered within EagerWindow leave in one GOSSIP
// per eager peer, announcements in one IHAVE per chosen lazy peer.
func TestWindowsBatch(t *testing.T) {
	cfg := testConfig()
	cfg.EagerWindow = 100 * time.Millisecond
	cfg.IHaveWindow = 200 * time.Millisecond
	w := newNet(t, 8, cfg)
	for i := range 5 {
		w.write("n00", fmt.Sprintf("k%d", i), uint64(i+1))
	}
	tr := w.nodes["n00"].tree
	if d := tr.Deadline(); !d.Equal(t0.Add(cfg.EagerWindow)) {
		t.Fatalf("deadline %v, want the eager window's end %v", d, t0.Add(cfg.EagerWindow))
	}
	tr.Tick(t0.Add(cfg.EagerWindow - time.Millisecond))
	if w.sent["plum_gossip"] != 0 {
		t.Fatal("pushed before the window closed")
	}
	w.now = t0.Add(cfg.EagerWindow)
	tr.Tick(w.now)
	s := tr.Stats()
	if s.Gossips != uint64(cfg.Fanout) || s.GossipRecords != uint64(5*cfg.Fanout) {
		t.Errorf("%d GOSSIP with %d records, want %d with 5 each", s.Gossips, s.GossipRecords, cfg.Fanout)
	}
	w.now = t0.Add(cfg.IHaveWindow)
	tr.Tick(w.now)
	s = tr.Stats()
	if s.IHaves != uint64(cfg.LazyFanout) || s.IHaveIDs != uint64(5*cfg.LazyFanout) {
		t.Errorf("%d IHAVE naming %d versions, want %d naming 5 each", s.IHaves, s.IHaveIDs, cfg.LazyFanout)
	}
}

func TestEncodeDecode(t *testing.T) {
	vs := []store.Version{{HLC: 500, Node: 2}, {HLC: 100, Node: 1}, {HLC: 103, Node: 1}, {HLC: 100, Node: 1}, {HLC: 1 << 60, Node: 2}}
	tr := New(DefaultConfig(), memstore.New(), rand.New(rand.NewPCG(1, 1)), nil, nil)
	got := tr.decode(encode(vs))
	want := []store.Version{{HLC: 100, Node: 1}, {HLC: 103, Node: 1}, {HLC: 500, Node: 2}, {HLC: 1 << 60, Node: 2}}
	if !slices.Equal(got, want) {
		t.Errorf("decode(encode) = %v, want %v", got, want)
	}
}

// Hostile announcements and grafts are bounded and crash nothing.
func TestBadInput(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueue = 100
	cfg.MaxMissing = 50
	st := memstore.New()
	var sent []*wire.Envelope
	tr := New(cfg, st, rand.New(rand.NewPCG(1, 1)), func(*rand.Rand, int) []string { return nil },
		func(_ string, env *wire.Envelope) bool { sent = append(sent, env); return true })
	huge := &wire.PlumIDs{Node: 9, HlcDeltas: make([]uint64, 10_000)}
	for i := range huge.HlcDeltas {
		huge.HlcDeltas[i] = ^uint64(0) // wraps
	}
	tr.IHave(t0, "evil", []*wire.PlumIDs{huge, nil, {}})
	if s := tr.Stats(); s.Missing > cfg.MaxMissing || s.DroppedQueue == 0 {
		t.Errorf("missing %d (bound %d), dropped %d", s.Missing, cfg.MaxMissing, s.DroppedQueue)
	}
	if err := tr.Graft(t0, "evil", []*wire.PlumIDs{huge}); err != nil {
		t.Fatal(err)
	}
	for _, env := range sent {
		if env.GetPlumGossip() != nil {
			t.Error("served a graft for versions never seen")
		}
	}
	// Grafts of versions nobody serves are given up after MaxGraftTries.
	now := t0
	for range cfg.MaxGraftTries + 2 {
		now = now.Add(cfg.GraftTimeout)
		tr.Tick(now)
	}
	if s := tr.Stats(); s.Missing != 0 || s.GraftFailed == 0 {
		t.Errorf("after the tries: %d missing, %d failed", s.Missing, s.GraftFailed)
	}
	tr.Gossip(t0, "evil", false, nil, nil, nil) // an empty GOSSIP
	tr.Prune("nobody")
}

// The seen cache holds at most MaxSeen versions, the oldest leaving first.
func TestSeenBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSeen = 10
	tr := New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 1)), nil, nil)
	for i := range 25 {
		tr.Received([]byte(fmt.Sprintf("k%d", i)), store.Version{HLC: uint64(i + 1), Node: 1})
	}
	if s := tr.Stats(); s.Seen != 10 {
		t.Errorf("seen %d, want 10", s.Seen)
	}
	if _, ok := tr.seen[store.Version{HLC: 25, Node: 1}]; !ok {
		t.Error("the newest version was forgotten")
	}
	if _, ok := tr.seen[store.Version{HLC: 15, Node: 1}]; ok {
		t.Error("an old version is still held")
	}
}

// With PruneAfter 2 a link is pruned at its second duplicate in a row, not
// at its first.
func TestPruneAfter(t *testing.T) {
	cfg := testConfig()
	cfg.Fanout = 2
	cfg.PruneAfter = 2
	w := newNet(t, 3, cfg)
	w.write("n00", "k1", 1)
	w.run(w.now.Add(time.Second))
	for _, name := range []string{"n01", "n02"} {
		if s := w.nodes[name].tree.Stats(); s.Duplicates != 1 || s.Prunes != 0 || len(w.nodes[name].tree.Eager()) != 2 {
			t.Fatalf("%s after one duplicate: %+v, eager %v; want no prune yet", name, s, w.nodes[name].tree.Eager())
		}
	}
	w.write("n00", "k2", 2)
	w.run(w.now.Add(time.Second))
	for _, name := range []string{"n01", "n02"} {
		tr := w.nodes[name].tree
		if s := tr.Stats(); s.Prunes != 1 || !slices.Equal(tr.Eager(), []string{"n00"}) {
			t.Errorf("%s after two duplicates: %d prunes, eager %v; want 1 and [n00]", name, s.Prunes, tr.Eager())
		}
	}
}
