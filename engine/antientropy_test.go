package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/digest"
	"github.com/hearsaydb/hearsay/store/storetest"
)

// aeOnly switches every mechanism off but anti-entropy, with a short
// interval, and keeps partitioned members suspect rather than dead.
func aeOnly(mode antientropy.Mode, full bool) func(*engine.Config) {
	return func(cfg *engine.Config) {
		cfg.DirectMail = false
		cfg.RumorMongering = false
		cfg.AntiEntropy = true
		cfg.AE.Interval = time.Second
		cfg.AE.Mode = mode
		cfg.AE.FullExchange = full
		cfg.AE.ChunkBytes = 4 << 10
		cfg.Membership.SuspicionTimeout = time.Hour
	}
}

func contents(t *testing.T, nd *sim.Node) map[string]store.Record {
	t.Helper()
	out := map[string]store.Record{}
	if err := nd.Store.Scan(nil, nil, func(r store.Record) bool { out[string(r.Key)] = r; return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// fingerprint is a node's first digest cell: it sums every record, so
// equal fingerprints mean equal replicas (up to a hash collision).
func fingerprint(nd *sim.Node) digest.Cell {
	var c [1]digest.Cell
	nd.Store.Digest().CopyCells(c[:], 0)
	return c[0]
}

func converged(nodes []*sim.Node) bool {
	f := fingerprint(nodes[0])
	for _, nd := range nodes[1:] {
		if fingerprint(nd) != f {
			return false
		}
	}
	return true
}

// writeRandom makes n random writes, overwrites and deletes on the given
// nodes over keys k0..k{keys-1}, advancing virtual time between them.
func writeRandom(t *testing.T, c *sim.Cluster, rng *rand.Rand, nodes []*sim.Node, n, keys int) {
	t.Helper()
	for i := range n {
		nd := nodes[rng.IntN(len(nodes))]
		k := fmt.Sprintf("k%d", rng.IntN(keys))
		var err error
		if rng.IntN(5) == 0 {
			_, err = nd.Delete(k)
		} else {
			_, err = nd.Put(k, fmt.Sprintf("%s-%d", nd.Name, i))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RunFor(time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

// wantNewest checks that every node holds, for every key, the record with
// the highest version any node held before reconciliation.
func wantNewest(t *testing.T, nodes []*sim.Node, before []map[string]store.Record) {
	t.Helper()
	want := map[string]store.Record{}
	for _, m := range before {
		for k, r := range m {
			if cur, ok := want[k]; !ok || r.Wins(cur) {
				want[k] = r
			}
		}
	}
	for _, nd := range nodes {
		got := contents(t, nd)
		if len(got) != len(want) {
			t.Fatalf("%s holds %d records, want %d", nd.Name, len(got), len(want))
		}
		for k, w := range want {
			if !storetest.Equal(got[k], w) {
				t.Fatalf("%s: %q = %s, want %s", nd.Name, k, storetest.Format(got[k]), storetest.Format(w))
			}
		}
	}
}

func TestAntiEntropyTwoReplicasConverge(t *testing.T) {
	for _, tc := range []struct {
		mode antientropy.Mode
		full bool
	}{{antientropy.PushPull, false}, {antientropy.Push, false}, {antientropy.Pull, false}, {antientropy.PushPull, true}} {
		t.Run(fmt.Sprintf("%v/full=%v", tc.mode, tc.full), func(t *testing.T) {
			c := cluster(t, sim.Options{Seed: 11, Latency: time.Millisecond, Jitter: 2 * time.Millisecond}, 2, aeOnly(tc.mode, tc.full))
			nodes := c.Nodes()
			rng := rand.New(rand.NewPCG(1, 2))
			// A common history, then divergent ones on both sides of a
			// cut link.
			writeRandom(t, c, rng, nodes, 300, 200)
			c.Partition([]string{"n1"}, []string{"n2"})
			writeRandom(t, c, rng, nodes, 400, 200)
			before := []map[string]store.Record{contents(t, nodes[0]), contents(t, nodes[1])}
			if converged(nodes) {
				t.Fatal("replicas did not diverge")
			}
			c.Heal()
			ok, err := c.RunUntil(time.Minute, func() bool { return converged(nodes) })
			if err != nil || !ok {
				t.Fatalf("not converged after a minute: %v; stats %+v", err, nodes[0].Engine.Stats().AntiEntropy)
			}
			wantNewest(t, nodes, before)
			t.Logf("converged after %v; n1 %+v", c.Now().Sub(sim.Epoch), nodes[0].Engine.Stats().AntiEntropy)
		})
	}
}

// TestAntiEntropyHealsPartitionedCluster splits 50 nodes in halves that
// both take writes, with anti-entropy as the only mechanism: after the
// partition heals every replica converges to the newest record of every
// key.
func TestAntiEntropyHealsPartitionedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("50-node simulation")
	}
	const n = 50
	c := cluster(t, sim.Options{Seed: 12, Latency: time.Millisecond, Jitter: 3 * time.Millisecond, Loss: 0.01}, n, aeOnly(antientropy.PushPull, false))
	nodes := c.Nodes()
	var left, right []string
	for i, nd := range nodes {
		if i < n/2 {
			left = append(left, nd.Name)
		} else {
			right = append(right, nd.Name)
		}
	}
	c.Partition(left, right)
	rng := rand.New(rand.NewPCG(3, 4))
	writeRandom(t, c, rng, nodes[:n/2], 300, 400)
	writeRandom(t, c, rng, nodes[n/2:], 300, 400)
	if err := c.RunFor(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := make([]map[string]store.Record, n)
	for i, nd := range nodes {
		before[i] = contents(t, nd)
	}
	if fingerprint(nodes[0]) == fingerprint(nodes[n-1]) {
		t.Fatal("halves did not diverge")
	}
	c.Heal()
	healed := c.Now()
	ok, err := c.RunUntil(5*time.Minute, func() bool { return converged(nodes) })
	if err != nil || !ok {
		t.Fatalf("not converged 5 minutes after healing: %v", err)
	}
	wantNewest(t, nodes, before)
	var s antientropy.Stats
	for _, nd := range nodes {
		a := nd.Engine.Stats().AntiEntropy
		s.Completed += a.Completed
		s.Stalled += a.Stalled
		s.FullFallbacks += a.FullFallbacks
		s.BadDigests += a.BadDigests
	}
	if s.BadDigests != 0 {
		t.Fatalf("%d bad digests between honest nodes", s.BadDigests)
	}
	t.Logf("converged %v after healing; exchanges completed %d, stalled %d, full fallbacks %d; network %+v",
		c.Now().Sub(healed), s.Completed, s.Stalled, s.FullFallbacks, c.Stats())
}

// TestNoResurrectionAfterLongAbsence is the resurrection case in
// simulation: n3 is down while a key is deleted and its tombstone
// collected; it comes back after longer than the grace period, holding the
// old record. It must not serve until it has pulled, and the deleted
// record must not come back anywhere.
func TestNoResurrectionAfterLongAbsence(t *testing.T) {
	configure := func(cfg *engine.Config) {
		cfg.AntiEntropy = true
		cfg.AE.Interval = time.Second
		cfg.AE.TombstoneGrace = 10 * time.Minute
		cfg.AE.AliveInterval = 10 * time.Second
	}
	c := cluster(t, sim.Options{Seed: 13, Latency: time.Millisecond}, 3, configure)
	n1, n2, n3 := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
	for i := range 20 {
		if _, err := n1.Put(fmt.Sprint("k", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n1.Put("doomed", "old"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.RunUntil(time.Minute, func() bool { return converged(c.Nodes()) }); err != nil || !ok {
		t.Fatalf("initial writes did not spread: %v", err)
	}
	n3.Crash()
	if _, err := n1.Delete("doomed"); err != nil {
		t.Fatal(err)
	}
	// Past the grace period, the tombstone is collected on n1 and n2.
	if err := c.RunFor(15 * time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*sim.Node{n1, n2} {
		if _, ok := nd.Get("doomed"); ok {
			t.Fatalf("%s still holds the tombstone after the grace period", nd.Name)
		}
	}
	if _, ok := n3.Get("doomed"); !ok {
		t.Fatal("n3 lost its old record while down")
	}
	if err := n3.Restart(); err != nil {
		t.Fatal(err)
	}
	if n3.Engine.Serving() {
		t.Fatal("n3 serves right after an absence longer than the grace period")
	}
	n3.Join("n1")
	ok, err := c.RunUntil(time.Minute, func() bool { return n3.Engine.Serving() })
	if err != nil || !ok {
		t.Fatalf("n3 never finished its pull: %v; %+v", err, n3.Engine.Stats().AntiEntropy)
	}
	if err := c.RunFor(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.Nodes() {
		if r, ok := nd.Get("doomed"); ok {
			t.Fatalf("%s holds the deleted record again: %s", nd.Name, storetest.Format(r))
		}
	}
	if !converged(c.Nodes()) {
		t.Fatal("replicas differ after n3 came back")
	}
	if s := n3.Engine.Stats().AntiEntropy; s.Recovered != 1 || s.Dropped != 1 {
		t.Fatalf("n3 stats %+v, want one recovery dropping one record", s)
	}
}

// A node that joins a cluster holding data reconciles with its seed at
// once, not an anti-entropy interval later.
func TestJoinerReconcilesWithSeedAtOnce(t *testing.T) {
	slowAE := func(cfg *engine.Config) {
		cfg.AE.Interval = time.Hour // only the join-time exchange can run
		cfg.DirectMail = false
		cfg.RumorMongering = false
	}
	c := sim.New(sim.Options{Seed: 21, Latency: time.Millisecond})
	n1, err := c.AddNode("n1", slowAE)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := n1.Put(fmt.Sprintf("k%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	n2, err := c.AddNode("n2", slowAE)
	if err != nil {
		t.Fatal(err)
	}
	n2.Join("n1")
	ok, err := c.RunUntil(5*time.Second, func() bool {
		_, last := n2.Get("k199")
		_, first := n2.Get("k000")
		return first && last
	})
	if err != nil || !ok {
		t.Fatalf("joiner did not catch up within 5 s: %+v", n2.Engine.Stats().AntiEntropy)
	}
	if got := n2.Engine.Stats().AntiEntropy.Started; got != 1 {
		t.Fatalf("joiner started %d exchanges, want exactly the join-time one", got)
	}
}

// A node back from longer than the grace period must not deliver the mail
// it queued before leaving: its records may have been deleted since, their
// tombstones collected, and delivery would bring them back.
func TestNoResurrectionFromStaleOutbox(t *testing.T) {
	configure := func(cfg *engine.Config) {
		cfg.AntiEntropy = true
		cfg.AE.Interval = time.Second
		cfg.AE.TombstoneGrace = 10 * time.Minute
		cfg.AE.AliveInterval = 10 * time.Second
		cfg.Membership.SuspicionTimeout = 24 * time.Hour // n3's peers stay alive in its view
	}
	c := cluster(t, sim.Options{Seed: 14, Latency: time.Millisecond}, 3, configure)
	n1, n3 := c.Nodes()[0], c.Nodes()[2]
	// n3 cannot reach n1: its mail of "doomed" to n1 waits in an outbox.
	c.Cut("n3", "n1")
	if _, err := n3.Put("doomed", "old"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.RunUntil(time.Minute, func() bool { return n3.Engine.Stats().Mail.OutboxRecords == 1 }); err != nil || !ok {
		t.Fatalf("no outbox entry on n3: %+v", n3.Engine.Stats().Mail)
	}
	n3.Crash()
	c.Mend("n3", "n1")
	if ok, err := c.RunUntil(time.Minute, func() bool { _, ok := n1.Get("doomed"); return ok }); err != nil || !ok {
		t.Fatal("doomed never reached n1 through n2")
	}
	if _, err := n1.Delete("doomed"); err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(15 * time.Minute); err != nil { // tombstones collected
		t.Fatal(err)
	}
	if _, ok := n1.Get("doomed"); ok {
		t.Fatal("tombstone not collected on n1")
	}
	if err := n3.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := n3.Engine.Stats().Mail.OutboxRecords; got != 0 {
		t.Fatalf("n3 came back after the grace period with %d records of stale mail", got)
	}
	n3.Join("n1")
	if err := c.RunFor(time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.Nodes() {
		if r, ok := nd.Get("doomed"); ok {
			t.Fatalf("%s holds the deleted record again: %s", nd.Name, storetest.Format(r))
		}
	}
}

func graceConfig(cfg *engine.Config) {
	cfg.AntiEntropy = true
	cfg.AE.Interval = time.Second
	cfg.AE.TombstoneGrace = 10 * time.Minute
	cfg.AE.AliveInterval = 10 * time.Second
}

// A node that keeps running but is partitioned from every peer for longer
// than the grace period is as stale as one that was down: when the
// partition heals it must recover before serving, and a record deleted
// (and its tombstone collected) on the other side must not come back.
func TestNoResurrectionAfterLongPartition(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 15, Latency: time.Millisecond}, 3, graceConfig)
	n1, n3 := c.Nodes()[0], c.Nodes()[2]
	if _, err := n1.Put("doomed", "old"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.RunUntil(time.Minute, func() bool { return converged(c.Nodes()) }); err != nil || !ok {
		t.Fatalf("write did not spread: %v", err)
	}
	c.Partition([]string{"n3"}, []string{"n1", "n2"})
	if _, err := n1.Delete("doomed"); err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(15 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok := n1.Get("doomed"); ok {
		t.Fatal("tombstone not collected on n1 after the grace period")
	}
	if r, ok := n3.Get("doomed"); !ok || r.Tombstone {
		t.Fatal("n3 should still hold the live record on its side of the partition")
	}
	if !n3.Engine.Serving() {
		t.Fatal("n3 stopped serving while it had no peer to recover from")
	}
	c.Heal()
	ok, err := c.RunUntil(2*time.Minute, func() bool {
		s := n3.Engine.Stats().AntiEntropy
		return s.Isolated == 1 && s.Recovered == 1 && n3.Engine.Serving()
	})
	if err != nil || !ok {
		t.Fatalf("n3 did not recover after the heal: %+v", n3.Engine.Stats().AntiEntropy)
	}
	if err := c.RunFor(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.Nodes() {
		if r, ok := nd.Get("doomed"); ok {
			t.Fatalf("%s holds the deleted record again: %s", nd.Name, storetest.Format(r))
		}
		if s := nd.Engine.Stats().AntiEntropy; nd != n3 && s.Isolated != 0 {
			t.Fatalf("%s, which kept syncing on its side, started a recovery", nd.Name)
		}
	}
}

// When every node was cut off from every other for longer than the grace
// period, all of them recover at the heal; none may wait forever for a
// serving peer.
func TestAllIsolatedNodesRecover(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 16, Latency: time.Millisecond}, 2, graceConfig)
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	if _, err := n1.Put("k", "v"); err != nil {
		t.Fatal(err)
	}
	c.Partition([]string{"n1"}, []string{"n2"})
	if err := c.RunFor(15 * time.Minute); err != nil {
		t.Fatal(err)
	}
	c.Heal()
	ok, err := c.RunUntil(2*time.Minute, func() bool {
		return n1.Engine.Stats().AntiEntropy.Isolated == 1 && n2.Engine.Stats().AntiEntropy.Isolated == 1 &&
			n1.Engine.Serving() && n2.Engine.Serving()
	})
	if err != nil || !ok {
		t.Fatalf("isolated nodes did not both recover: n1 %+v, n2 %+v", n1.Engine.Stats().AntiEntropy, n2.Engine.Stats().AntiEntropy)
	}
}
