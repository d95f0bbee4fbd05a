package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/sim"
)

// With direct mail off, rumors alone carry a write to nearly every node of
// a 300-node cluster under 1% loss, in well under a second (a logarithmic
// number of rounds). The residue (nodes never reached) is measured and
// reported, not hidden.
func TestRumorsSpreadWithoutDirectMail(t *testing.T) {
	const n = 300
	rumorsOnly := func(cfg *engine.Config) {
		cfg.DirectMail = false
		cfg.Membership.SuspicionTimeout = time.Hour // study dissemination, not detection
	}
	c := cluster(t, sim.Options{Seed: 11, Latency: 2 * time.Millisecond, Jitter: 3 * time.Millisecond, Loss: 0.01}, n, rumorsOnly)
	src := c.Nodes()[17]
	rec, err := src.Put("news", "rumor has it")
	if err != nil {
		t.Fatal(err)
	}
	start := c.Now()
	reached := func() int {
		k := 0
		for _, nd := range c.Nodes() {
			if holds(nd, "news", rec.Version) {
				k++
			}
		}
		return k
	}
	// Run until no node is infective for the rumor any more.
	ok, err := c.RunUntil(5*time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if nd.Engine.Stats().Rumor.Hot > 0 {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("rumor never died out: %v", err)
	}
	got := reached()
	residue := float64(n-got) / n
	var msgs uint64
	for _, nd := range c.Nodes() {
		msgs += nd.Engine.Stats().Rumor.Messages
	}
	t.Logf("n=%d fanout=3 feedback-counter k=3 loss=1%%: residue %.4f, %.2f rumor messages per node, died out after %v",
		n, residue, float64(msgs)/n, c.Now().Sub(start))
	// Mean-field theory puts the residue of feedback with k=3 near
	// e^{-(k+1)} ≈ 0.02 (docs/SIMULATION.md); anti-entropy removes it.
	if residue > 0.05 {
		t.Fatalf("residue %.3f: rumors reached only %d of %d nodes", residue, got, n)
	}
	if s := src.Engine.Stats().Mail; s.MailsSent != 0 {
		t.Fatalf("direct mail is off but %d mails were sent", s.MailsSent)
	}
}

// An update larger than a datagram spreads by announcement and fetch.
func TestLargeRumorSpreadsByFetch(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 12, Latency: time.Millisecond}, 20, func(cfg *engine.Config) { cfg.DirectMail = false })
	big := make([]byte, 100_000)
	for i := range big {
		big[i] = byte(i)
	}
	rec, err := c.Nodes()[0].Put("big", string(big))
	if err != nil {
		t.Fatal(err)
	}
	ok, err := c.RunUntil(time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if !holds(nd, "big", rec.Version) {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatal("large rumor did not reach every node")
	}
	var fetches uint64
	for _, nd := range c.Nodes() {
		fetches += nd.Engine.Stats().Rumor.Fetches
	}
	if fetches == 0 {
		t.Fatal("no fetches: the large value was not announced")
	}
}

// Direct mail gives way to rumors in clusters larger than DirectMailMaxPeers.
func TestDirectMailLimitedToSmallClusters(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 13, Latency: time.Millisecond}, 12, func(cfg *engine.Config) { cfg.DirectMailMaxPeers = 5 })
	if _, err := c.Nodes()[0].Put("k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i, nd := range c.Nodes() {
		if _, ok := nd.Get("k"); !ok {
			t.Fatalf("node %d missed the write", i)
		}
	}
	if s := c.Nodes()[0].Engine.Stats().Mail; s.MailsSent != 0 {
		t.Fatalf("11 peers > DirectMailMaxPeers=5, yet %d mails sent", s.MailsSent)
	}
	_ = fmt.Sprint()
}

// Issue 14: large updates spread by rumors alone reach every node of 16 in
// every run, and each node fetches the body about once (again only when a
// fetch or its answer was lost). Anti-entropy is off, so nothing repairs
// what rumor mongering misses. 1% of messages are lost; links carry
// 100 MB/s, so a body takes 2.6 to 10 ms to cross one, and a node serving
// several fetches at once serves them one after the other.
func TestLargeRumorsReachEveryNode(t *testing.T) {
	const n = 16
	for _, size := range []int{256 << 10, 1 << 20} {
		var fetched, needed uint64
		for seed := uint64(1); seed <= 10; seed++ {
			c := cluster(t, sim.Options{Seed: 100 + seed, Latency: time.Millisecond, Jitter: time.Millisecond, Loss: 0.01, Bandwidth: 100e6}, n,
				func(cfg *engine.Config) {
					cfg.DirectMail = false
					cfg.AntiEntropy = false
				})
			before := servedBodies(c)
			value := make([]byte, size)
			for i := range value {
				value[i] = byte(i)
			}
			src := c.Nodes()[int(seed)%n]
			start := c.Now()
			rec, err := src.Put("big", string(value))
			if err != nil {
				t.Fatal(err)
			}
			// Run until rumor mongering is over: nothing hot, no fetch
			// in flight, anywhere.
			ok, err := c.RunUntil(5*time.Minute, func() bool {
				for _, nd := range c.Nodes() {
					if s := nd.Engine.Stats().Rumor; s.Hot > 0 || s.Fetching > 0 {
						return false
					}
				}
				return true
			})
			if err != nil || !ok {
				t.Fatalf("size %d seed %d: rumor mongering never ended: %v", size, seed, err)
			}
			got := 0
			for _, nd := range c.Nodes() {
				if holds(nd, "big", rec.Version) {
					got++
				}
			}
			f := servedBodies(c) - before
			t.Logf("size %d seed %d: %d of %d nodes, %d bodies fetched for %d needed, over after %v",
				size, seed, got, n, f, n-1, c.Now().Sub(start))
			if got != n {
				t.Errorf("size %d seed %d: the update reached %d of %d nodes", size, seed, got, n)
			}
			fetched += f
			needed += n - 1
		}
		t.Logf("size %d: %d bodies fetched for %d needed", size, fetched, needed)
		if fetched > 2*needed {
			t.Errorf("size %d: %d bodies fetched for %d needed: more than twice", size, fetched, needed)
		}
	}
}

// servedBodies counts the bodies of announced rumors sent in answer to
// fetches, over all nodes.
func servedBodies(c *sim.Cluster) uint64 {
	var k uint64
	for _, nd := range c.Nodes() {
		k += nd.Engine.Stats().Rumor.Served
	}
	return k
}
