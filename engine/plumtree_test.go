package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store"
)

// With the broadcast tree as the only mechanism, writes from one node of a
// 60-node cluster reach every node, and once the tree has formed each
// update costs about one GOSSIP record per node instead of a flood; writes from
// random nodes then reach every node too.
func TestPlumtreeSpreads(t *testing.T) {
	const n = 60
	treeOnly := func(cfg *engine.Config) {
		cfg.DirectMail, cfg.RumorMongering, cfg.AntiEntropy = false, false, false
		cfg.Plumtree = true
		cfg.Membership.SuspicionTimeout = time.Hour
	}
	c := cluster(t, sim.Options{Seed: 41, Latency: 2 * time.Millisecond, Jitter: 3 * time.Millisecond}, n, treeOnly)
	rng := rand.New(rand.NewPCG(41, 0))
	records := func() uint64 {
		var k uint64
		for _, nd := range c.Nodes() {
			k += nd.Engine.Stats().Tree.GossipRecords
		}
		return k
	}
	var recs []store.Record
	single := true
	write := func(i int) {
		nd := c.Nodes()[0]
		if !single {
			nd = c.Nodes()[rng.IntN(n)]
		}
		r, err := nd.Put(fmt.Sprintf("k%d", i), "tree")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		if err := c.RunFor(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		write(i)
	}
	before := records()
	for i := 20; i < 60; i++ {
		write(i)
	}
	if err := c.RunFor(time.Second); err != nil {
		t.Fatal(err)
	}
	perUpdate := float64(records()-before) / 40 / (n - 1)
	t.Logf("one writer, after the tree formed: %.2f GOSSIP records per update per receiving node", perUpdate)
	// A flood along fanout 4 costs about 4; the tree 1, plus the
	// grafts and prunes that still reshape it now and then (with link
	// jitter, pushes cross prunes): 1.34 measured with seed 41 after
	// commit 26ca60a (1.15 before it, when lazy sets were unbounded).
	if perUpdate > 1.5 {
		t.Errorf("%.2f GOSSIP records per update and node: not a tree", perUpdate)
	}
	single = false
	for i := 60; i < 120; i++ {
		write(i)
	}
	ok, err := c.RunUntil(time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			for _, r := range recs {
				if !holds(nd, string(r.Key), r.Version) {
					return false
				}
			}
		}
		return true
	})
	if err != nil || !ok {
		for _, nd := range c.Nodes() {
			for _, r := range recs {
				if !holds(nd, string(r.Key), r.Version) {
					t.Logf("%s lacks %s: %+v", nd.Name, r.Key, nd.Engine.Stats().Tree)
				}
			}
		}
		t.Fatalf("updates did not reach every node by the tree alone: %v", err)
	}
}

// A node declared dead leaves every view; the tree heals around it and
// later writes still reach every live node.
func TestPlumtreeHealsAroundDeadNode(t *testing.T) {
	const n = 30
	cfg := func(cfg *engine.Config) {
		cfg.DirectMail, cfg.RumorMongering, cfg.AntiEntropy = false, false, false
		cfg.Plumtree = true
	}
	c := cluster(t, sim.Options{Seed: 42, Latency: 2 * time.Millisecond}, n, cfg)
	src := c.Nodes()[0]
	for i := range 5 {
		if _, err := src.Put(fmt.Sprintf("warm%d", i), "v"); err != nil {
			t.Fatal(err)
		}
		if err := c.RunFor(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	// Crash the busiest inner node of the tree.
	var victim *sim.Node
	for _, nd := range c.Nodes()[1:] {
		if victim == nil || nd.Engine.Stats().Tree.Eager > victim.Engine.Stats().Tree.Eager {
			victim = nd
		}
	}
	victim.Crash()
	ok, err := c.RunUntil(time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if nd != victim && state(nd, victim.Name).String() != "DEAD" {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("%s was not declared dead: %v", victim.Name, err)
	}
	r, err := src.Put("after", "v")
	if err != nil {
		t.Fatal(err)
	}
	ok, err = c.RunUntil(time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if nd != victim && !holds(nd, "after", r.Version) {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("after %s died, the update did not reach every live node: %v", victim.Name, err)
	}
}
