package antientropy

import (
	"math/rand/v2"
	"testing"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// FuzzStep feeds arbitrary frames, as from a faulty or hostile peer, to a
// reconciler in the middle of exchanges in both roles: it must neither
// panic nor leave more sessions than it allows.
func FuzzStep(f *testing.F) {
	// Seed with the frames of a real exchange.
	n := newNet(&testing.T{})
	a := n.add("a", testConfig(), memstore.New())
	b := n.add("b", testConfig(), memstore.New())
	diverge(&testing.T{}, rand.New(rand.NewPCG(1, 1)), a.st, b.st, 50, 20)
	a.r.Start(n.now, "b")
	for len(n.queue) > 0 {
		fr := n.queue[0]
		f.Add(fr.b)
		n.queue = n.queue[1:]
		env, _ := wire.Unmarshal(fr.b, 0)
		_ = n.nodes[fr.to].r.Step(n.now, fr.from, env)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		env, err := wire.Unmarshal(frame, 0)
		if err != nil {
			return
		}
		n := newNet(t)
		cfg := testConfig()
		a := n.add("a", cfg, memstore.NewWithOptions(memstore.Options{DigestCells: 256}))
		b := n.add("b", cfg, memstore.NewWithOptions(memstore.Options{DigestCells: 256}))
		diverge(t, rand.New(rand.NewPCG(2, 2)), a.st, b.st, 30, 10)
		a.r.Start(n.now, "b")
		// The frame reaches both sides, as from the other; then the
		// exchange runs on.
		_ = b.r.Step(n.now, "a", env)
		_ = a.r.Step(n.now, "b", env)
		n.run()
		if s := b.r.Stats(); s.Active > cfg.MaxSessions {
			t.Fatalf("%d sessions", s.Active)
		}
	})
}
