package antientropy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/hlc"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/digest"
	"github.com/hearsaydb/hearsay/store/memstore"
	"github.com/hearsaydb/hearsay/store/storetest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// tnet is a test network of reconcilers: messages are really encoded, and
// delivered in order or, with shuffle set, in random order.
type tnet struct {
	t       *testing.T
	now     time.Time
	nodes   map[string]*tnode
	names   []string
	queue   []frame
	shuffle *rand.Rand
	drop    func(f frame) bool
	bytes   int
	msgs    int
	errs    []error
}

type frame struct {
	from, to string
	b        []byte
}

type tnode struct {
	name string
	st   store.Store
	r    *Reconciler
}

func newNet(t *testing.T) *tnet {
	return &tnet{t: t, now: t0, nodes: map[string]*tnode{}}
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Interval = time.Hour // exchanges are started by hand
	cfg.Jitter = 0
	cfg.ChunkBytes = 2 << 10 // many chunks, to exercise the window
	cfg.Window = 2
	return cfg
}

func (n *tnet) add(name string, cfg Config, st store.Store) *tnode {
	n.t.Helper()
	nd := &tnode{name: name, st: st}
	sample := func(rng *rand.Rand, k int) []string {
		var out []string
		for _, p := range n.names {
			if p != name {
				out = append(out, p)
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out[:min(k, len(out))]
	}
	send := func(peer string, env *wire.Envelope) bool {
		env.From = name
		b, err := wire.Marshal(env)
		if err != nil {
			n.t.Fatalf("marshal: %v", err)
		}
		n.queue = append(n.queue, frame{name, peer, b})
		return true
	}
	r, err := New(name, cfg, st, rand.New(rand.NewPCG(uint64(len(n.names)), 1)), n.now, sample, send, ApplyTo(st))
	if err != nil {
		n.t.Fatal(err)
	}
	nd.r = r
	n.nodes[name] = nd
	n.names = append(n.names, name)
	return nd
}

// run delivers messages until none is left.
func (n *tnet) run() {
	n.t.Helper()
	for steps := 0; len(n.queue) > 0; steps++ {
		if steps > 1e6 {
			n.t.Fatal("exchange does not end")
		}
		i := 0
		if n.shuffle != nil {
			i = n.shuffle.IntN(len(n.queue))
		}
		f := n.queue[i]
		n.queue = slices.Delete(n.queue, i, i+1)
		n.bytes += len(f.b)
		n.msgs++
		if n.drop != nil && n.drop(f) {
			continue
		}
		env, err := wire.Unmarshal(f.b, 0)
		if err != nil {
			n.t.Fatalf("unmarshal: %v", err)
		}
		if err := n.nodes[f.to].r.Step(n.now, f.from, env); err != nil {
			n.errs = append(n.errs, err)
		}
	}
}

func ts(ms int) uint64 { return hlc.Pack(uint64(t0.UnixMilli())+uint64(ms), 0) }

func put(t testing.TB, st store.Store, key string, ms int, node uint64, tomb bool, value string) store.Record {
	t.Helper()
	r := store.Record{Key: []byte(key), Version: store.Version{HLC: ts(ms), Node: node}, Tombstone: tomb}
	if !tomb {
		r.Value = []byte(value)
	}
	if _, err := st.Apply([]store.Record{r}); err != nil {
		t.Fatal(err)
	}
	return r
}

func all(t testing.TB, st store.Store) map[string]store.Record {
	t.Helper()
	out := map[string]store.Record{}
	if err := st.Scan(nil, nil, func(r store.Record) bool { out[string(r.Key)] = r; return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// newest merges two replicas' contents key by key, last-writer-wins.
func newest(a, b map[string]store.Record) map[string]store.Record {
	out := map[string]store.Record{}
	for k, r := range a {
		out[k] = r
	}
	for k, r := range b {
		if cur, ok := out[k]; !ok || r.Wins(cur) {
			out[k] = r
		}
	}
	return out
}

func sameContent(t *testing.T, what string, got, want map[string]store.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !storetest.Equal(g, w) {
			t.Fatalf("%s: key %q = %s, want %s", what, k, storetest.Format(g), storetest.Format(w))
		}
	}
}

// diverge writes a common history to a and b, then a separate one to
// each: new keys, overwrites and deletes on both sides.
func diverge(t testing.TB, rng *rand.Rand, a, b store.Store, common, each int) {
	keys := common + each
	for i := range common {
		k := fmt.Sprintf("k%05d", rng.IntN(keys))
		tomb := rng.IntN(10) == 0
		put(t, a, k, i, 1, tomb, fmt.Sprint("c", i))
		put(t, b, k, i, 1, tomb, fmt.Sprint("c", i))
	}
	for i := range each {
		for side, st := range []store.Store{a, b} {
			k := fmt.Sprintf("k%05d", rng.IntN(keys))
			ms := common + rng.IntN(2*each+1)
			put(t, st, k, ms, uint64(side+2), rng.IntN(5) == 0, fmt.Sprint(side, "-", i))
		}
	}
}

func TestModesConverge(t *testing.T) {
	for _, full := range []bool{false, true} {
		for _, mode := range []Mode{PushPull, Push, Pull} {
			for _, shuffle := range []bool{false, true} {
				name := fmt.Sprintf("%v/full=%v/reorder=%v", mode, full, shuffle)
				t.Run(name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(mode), 9))
					n := newNet(t)
					if shuffle {
						n.shuffle = rand.New(rand.NewPCG(3, 3))
					}
					cfg := testConfig()
					cfg.Mode, cfg.FullExchange = mode, full
					a := n.add("a", cfg, memstore.New())
					b := n.add("b", cfg, memstore.New())
					diverge(t, rng, a.st, b.st, 2000, 300)
					beforeA, beforeB := all(t, a.st), all(t, b.st)
					want := newest(beforeA, beforeB)
					if !a.r.Start(n.now, "b") {
						t.Fatal("exchange not started")
					}
					n.run()
					if len(n.errs) > 0 {
						t.Fatalf("errors: %v", n.errs)
					}
					if s := a.r.Stats(); s.Completed != 1 || s.Active != 0 || b.r.Stats().Served != 1 || b.r.Stats().Active != 0 {
						t.Fatalf("exchange did not complete: initiator %+v, responder %+v", s, b.r.Stats())
					}
					switch mode {
					case PushPull:
						sameContent(t, "initiator", all(t, a.st), want)
						sameContent(t, "responder", all(t, b.st), want)
					case Push:
						sameContent(t, "initiator", all(t, a.st), beforeA)
						sameContent(t, "responder", all(t, b.st), want)
					case Pull:
						sameContent(t, "initiator", all(t, a.st), want)
						sameContent(t, "responder", all(t, b.st), beforeB)
					}
					storetest.CheckDigest(t, a.st)
					storetest.CheckDigest(t, b.st)
					t.Logf("%d messages, %d bytes; initiator %+v", n.msgs, n.bytes, a.r.Stats())
				})
			}
		}
	}
}

// TestPropertyNewestWins checks, over many random histories, that after a
// push-pull exchange both sides hold, for every key, the record with the
// highest version either side had.
func TestPropertyNewestWins(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 77))
		n := newNet(t)
		if seed%2 == 1 {
			n.shuffle = rand.New(rand.NewPCG(seed, 1))
		}
		cfg := testConfig()
		a := n.add("a", cfg, memstore.NewWithOptions(memstore.Options{DigestCells: 1 << (6 + seed%6)}))
		b := n.add("b", cfg, memstore.NewWithOptions(memstore.Options{DigestCells: 1 << (6 + seed%5)}))
		diverge(t, rng, a.st, b.st, rng.IntN(500), rng.IntN(200))
		want := newest(all(t, a.st), all(t, b.st))
		a.r.Start(n.now, "b")
		n.run()
		if len(n.errs) > 0 {
			t.Fatalf("seed %d: %v", seed, n.errs)
		}
		sameContent(t, fmt.Sprintf("seed %d initiator", seed), all(t, a.st), want)
		sameContent(t, fmt.Sprintf("seed %d responder", seed), all(t, b.st), want)
	}
}

func TestEqualReplicasAgreeInOneRoundTrip(t *testing.T) {
	n := newNet(t)
	a := n.add("a", testConfig(), memstore.New())
	b := n.add("b", testConfig(), memstore.New())
	for i := range 5000 {
		r := store.Record{Key: fmt.Appendf(nil, "key%d", i), Value: make([]byte, 100), Version: store.Version{HLC: ts(i), Node: 1}}
		for _, st := range []store.Store{a.st, b.st} {
			if _, err := st.Apply([]store.Record{r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.r.Start(n.now, "b")
	n.run()
	if n.msgs != 2 || n.bytes >= 1024 {
		t.Fatalf("equal replicas: %d messages, %d bytes; want 2 messages, under 1 KiB", n.msgs, n.bytes)
	}
	if a.r.Stats().InSync != 1 || a.r.Stats().Completed != 1 || b.r.Stats().Active != 0 {
		t.Fatalf("stats: %+v / %+v", a.r.Stats(), b.r.Stats())
	}
	t.Logf("%d bytes", n.bytes)
}

// TestBytesFollowDifferences checks that the bytes an exchange costs grow
// with the differences, not with the store.
func TestBytesFollowDifferences(t *testing.T) {
	for _, d := range []int{1, 10, 100} {
		n := newNet(t)
		a := n.add("a", testConfig(), memstore.New())
		b := n.add("b", testConfig(), memstore.New())
		var moved int
		for i := range 20000 {
			r := store.Record{Key: fmt.Appendf(nil, "key%06d", i), Value: make([]byte, 100), Version: store.Version{HLC: ts(i), Node: 1}}
			if _, err := a.st.Apply([]store.Record{r}); err != nil {
				t.Fatal(err)
			}
			if i < d {
				moved += r.Size()
				continue // b lacks it
			}
			if _, err := b.st.Apply([]store.Record{r}); err != nil {
				t.Fatal(err)
			}
		}
		a.r.Start(n.now, "b")
		n.run()
		if limit := 2*moved + 16<<10; n.bytes > limit {
			t.Errorf("d=%d: %d bytes, more than 2×%d + 16 KiB", d, n.bytes, moved)
		}
		if got := len(all(t, b.st)); got != 20000 {
			t.Fatalf("d=%d: responder has %d records", d, got)
		}
		t.Logf("d=%d: %d messages, %d bytes for %d bytes of records", d, n.msgs, n.bytes, moved)
	}
}

func TestFallsBackToFullExchange(t *testing.T) {
	n := newNet(t)
	small := memstore.Options{DigestCells: 64}
	a := n.add("a", testConfig(), memstore.NewWithOptions(small))
	b := n.add("b", testConfig(), memstore.NewWithOptions(small))
	diverge(t, rand.New(rand.NewPCG(1, 1)), a.st, b.st, 100, 500)
	want := newest(all(t, a.st), all(t, b.st))
	a.r.Start(n.now, "b")
	n.run()
	sameContent(t, "initiator", all(t, a.st), want)
	sameContent(t, "responder", all(t, b.st), want)
	if a.r.Stats().FullFallbacks != 1 || b.r.Stats().FullFallbacks != 1 {
		t.Fatalf("no fallback counted: %+v %+v", a.r.Stats(), b.r.Stats())
	}
}

func TestMalformedDigestRefused(t *testing.T) {
	n := newNet(t)
	b := n.add("b", testConfig(), memstore.New())
	put(t, b.st, "x", 1, 1, false, "v")
	before := all(t, b.st)
	step := func(m *wire.AEStart) error {
		t.Helper()
		n.queue = nil
		err := b.r.Step(n.now, "evil", &wire.Envelope{From: "evil", Body: &wire.Envelope_AeStart{AeStart: m}})
		if len(n.queue) != 1 {
			t.Fatalf("%d answers, want one AEError", len(n.queue))
		}
		env, _ := wire.Unmarshal(n.queue[0].b, 0)
		if env.GetAeError() == nil {
			t.Fatalf("answer is %s, want ae_error", env.Kind())
		}
		return err
	}
	// Cells that do not parse.
	if err := step(&wire.AEStart{Session: 1, CellsTotal: 16, Cells: []byte{1, 2, 3}}); !errors.Is(err, ErrBadDigest) {
		t.Fatalf("truncated cells: err = %v", err)
	}
	// Cells that parse but claim, as the difference, a record b does not
	// hold: b's own cells minus an item it never had.
	own := b.st.Digest().Snapshot()[:16]
	fake := digest.Cells([]digest.Item{digest.ItemOf([]byte("ghost"), ts(5), 9, false)}, 16)
	forged := make([]digest.Cell, 16)
	for i := range forged {
		forged[i] = own[i].Sub(fake[i])
	}
	if err := step(&wire.AEStart{Session: 2, CellsTotal: 16, Cells: digest.AppendCells(nil, forged)}); !errors.Is(err, ErrBadDigest) {
		t.Fatalf("inconsistent cells: err = %v", err)
	}
	// The same forged item twice: the decoder itself refuses.
	twice := append(slices.Clone(forged), forged...)
	if err := step(&wire.AEStart{Session: 3, CellsTotal: 32, Cells: digest.AppendCells(nil, twice)}); !errors.Is(err, ErrBadDigest) {
		t.Fatalf("repeated cells: err = %v", err)
	}
	if s := b.r.Stats(); s.BadDigests != 3 || s.Active != 0 {
		t.Fatalf("stats %+v, want 3 bad digests and no session", s)
	}
	sameContent(t, "after bad digests", all(t, b.st), before)
}

func TestTombstonesCollectedAfterGrace(t *testing.T) {
	n := newNet(t)
	cfg := testConfig()
	cfg.TombstoneGrace = time.Hour
	cfg.SweepBatch = 3 // several sweeps per pass
	a := n.add("a", cfg, memstore.New())
	put(t, a.st, "old-tomb", 0, 1, true, "")
	put(t, a.st, "old-live", 0, 1, false, "v")
	put(t, a.st, "new-tomb", int(2*time.Hour/time.Millisecond), 1, true, "")
	for i := range 10 {
		put(t, a.st, fmt.Sprint("z", i), 0, 1, false, "v")
	}
	now := t0.Add(90 * time.Minute)
	for range 10 {
		now = now.Add(cfg.SweepInterval)
		if err := a.r.Tick(now); err != nil {
			t.Fatal(err)
		}
	}
	got := all(t, a.st)
	if _, ok := got["old-tomb"]; ok {
		t.Fatal("expired tombstone not collected")
	}
	if _, ok := got["new-tomb"]; !ok {
		t.Fatal("young tombstone collected")
	}
	if len(got) != 12 || a.r.Stats().Collected != 1 {
		t.Fatalf("%d records left, %d collected", len(got), a.r.Stats().Collected)
	}
	storetest.CheckDigest(t, a.st)
}

// TestExpiredTombstoneNotSpread checks that a death certificate past its
// grace period does not travel to a peer that has no record of the key.
func TestExpiredTombstoneNotSpread(t *testing.T) {
	for _, mode := range []Mode{Push, Pull} {
		n := newNet(t)
		n.now = t0.Add(2 * time.Hour)
		cfg := testConfig()
		cfg.TombstoneGrace = time.Hour
		cfg.Mode = mode
		a := n.add("a", cfg, memstore.New())
		b := n.add("b", cfg, memstore.New())
		holder := a.st
		if mode == Pull {
			holder = b.st
		}
		put(t, holder, "dead", 0, 1, true, "")
		put(t, holder, "fresh", int(90*time.Minute/time.Millisecond), 1, true, "")
		a.r.Start(n.now, "b")
		n.run()
		other := b.st
		if mode == Pull {
			other = a.st
		}
		got := all(t, other)
		if _, ok := got["dead"]; ok || len(got) != 1 {
			t.Fatalf("%v: peer holds %v, want only the fresh tombstone", mode, got)
		}
	}
}

// TestRecoveringNodeDoesNotResurrect is the resurrection case: a node
// stopped for longer than the grace period comes back holding a record
// that was deleted meanwhile and whose tombstone was collected. It must
// not serve until it has pulled, must drop that record, and must not give
// it back to the others.
func TestRecoveringNodeDoesNotResurrect(t *testing.T) {
	cases := []struct {
		name    string
		full    bool
		cells   int // digest size; small ones fall back to full exchange
		shuffle bool
	}{
		{"digest", false, 1024, false},
		{"full", true, 1024, false},
		{"fallback-reordered", false, 16, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.TombstoneGrace = 24 * time.Hour
			cfg.FullExchange = tc.full
			// x runs at t0, holding what everyone held then, and stops.
			xs := memstore.NewWithOptions(memstore.Options{DigestCells: tc.cells})
			xn := newNet(t)
			xn.add("x", cfg, xs)
			for i := range 50 {
				put(t, xs, fmt.Sprint("k", i), i, 1, false, "v")
			}
			put(t, xs, "doomed", 100, 1, false, "old")

			// Three days later: p deleted "doomed" two days ago and the
			// tombstone is gone; p also wrote new records. x holds one
			// record p lacks that is younger than the grace period (say,
			// restored from elsewhere), which it must keep.
			n := newNet(t)
			n.now = t0.Add(72 * time.Hour)
			if tc.shuffle {
				n.shuffle = rand.New(rand.NewPCG(5, 5))
			}
			ps := memstore.NewWithOptions(memstore.Options{DigestCells: tc.cells})
			for i := range 50 {
				put(t, ps, fmt.Sprint("k", i), i, 1, false, "v")
			}
			put(t, ps, "new", int(70*time.Hour/time.Millisecond), 2, false, "n")
			for i := range 30 {
				put(t, ps, fmt.Sprint("more", i), int(70*time.Hour/time.Millisecond), 2, false, "n")
			}
			put(t, xs, "recent", int(71*time.Hour/time.Millisecond), 1, false, "r")
			p := n.add("p", cfg, ps)
			x := n.add("x", cfg, xs)
			if x.r.Serving() {
				t.Fatal("a node away longer than the grace period serves at once")
			}
			if !p.r.Serving() {
				t.Fatal("a fresh node does not serve")
			}
			// p starts an exchange with x first: x refuses, so p pulls
			// nothing from it.
			p.r.Start(n.now, "x")
			n.run()
			if _, ok := all(t, ps)["doomed"]; ok {
				t.Fatal("recovering node gave a deleted record back")
			}
			if err := x.r.Tick(n.now); err != nil {
				t.Fatal(err)
			}
			n.run()
			if !x.r.Serving() {
				t.Fatalf("still recovering after a pull: %+v", x.r.Stats())
			}
			got := all(t, xs)
			if _, ok := got["doomed"]; ok {
				t.Fatal("deleted record kept by the recovering node")
			}
			if _, ok := got["new"]; !ok {
				t.Fatal("recovering node did not pull")
			}
			if _, ok := got["recent"]; !ok {
				t.Fatal("recovering node dropped a record younger than the grace period")
			}
			if x.r.Stats().Dropped != 1 {
				t.Fatalf("dropped %d records, want 1", x.r.Stats().Dropped)
			}
			if fell := x.r.Stats().FullFallbacks > 0; fell != (tc.cells < 64) {
				t.Fatalf("fell back to full exchange: %v, with %d cells", fell, tc.cells)
			}
			// Now serving, x reconciles normally and the deleted record
			// stays deleted everywhere.
			x.r.Start(n.now, "p")
			n.run()
			if _, ok := all(t, ps)["doomed"]; ok {
				t.Fatal("deleted record resurrected")
			}
			if _, ok := all(t, ps)["recent"]; !ok {
				t.Fatal("x's recent write did not reach p")
			}
		})
	}
}

func TestStalledExchangeAbandoned(t *testing.T) {
	n := newNet(t)
	cfg := testConfig()
	a := n.add("a", cfg, memstore.New())
	n.add("b", cfg, memstore.New())
	put(t, a.st, "x", 1, 1, false, "v")
	n.drop = func(frame) bool { return true }
	a.r.Start(n.now, "b")
	n.run()
	if a.r.Start(n.now, "b") {
		t.Fatal("second exchange with the same peer while one is in progress")
	}
	if err := a.r.Tick(n.now.Add(cfg.Timeout)); err != nil {
		t.Fatal(err)
	}
	if s := a.r.Stats(); s.Stalled != 1 || s.Active != 0 {
		t.Fatalf("stats %+v, want one stalled exchange", s)
	}
}

func TestBusyPeerRefuses(t *testing.T) {
	n := newNet(t)
	cfg := testConfig()
	cfg.MaxSessions = 1
	a := n.add("a", cfg, memstore.New())
	b := n.add("b", cfg, memstore.New())
	c := n.add("c", cfg, memstore.New())
	diverge(t, rand.New(rand.NewPCG(1, 2)), a.st, c.st, 10, 50)
	a.r.Start(n.now, "c")
	b.r.Start(n.now, "c")
	n.run()
	if a.r.Stats().Completed+b.r.Stats().Completed != 1 || a.r.Stats().Busy+b.r.Stats().Busy != 1 {
		t.Fatalf("stats a %+v, b %+v", a.r.Stats(), b.r.Stats())
	}
}

func TestTickStartsExchangesWithRandomPeers(t *testing.T) {
	n := newNet(t)
	cfg := testConfig()
	cfg.Interval = 10 * time.Second
	cfg.Jitter = 0.5
	cfg.SweepInterval, cfg.AliveInterval = time.Hour, time.Hour
	a := n.add("a", cfg, memstore.New())
	for _, p := range []string{"b", "c", "d"} {
		n.add(p, cfg, memstore.New())
	}
	picked := map[string]int{}
	now := n.now
	for range 300 {
		now = a.r.Deadline()
		if err := a.r.Tick(now); err != nil {
			t.Fatal(err)
		}
		for _, f := range n.queue {
			if f.from == "a" {
				picked[f.to]++
			}
		}
		n.now = now
		n.run()
	}
	if len(picked) != 3 || a.r.Stats().Started < 200 {
		t.Fatalf("peers picked %v, %d exchanges", picked, a.r.Stats().Started)
	}
	if elapsed := now.Sub(t0); elapsed < 300*5*time.Second || elapsed > 300*10*time.Second {
		t.Fatalf("exchanges too frequent: %v for %d", elapsed, a.r.Stats().Started)
	}
}
