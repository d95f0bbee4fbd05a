package engine

import (
	"fmt"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// stepTree handles the messages of the broadcast tree (package plumtree).
// A node without Config.Plumtree still merges the records a GOSSIP brings
// and answers grafts from what it holds, as it answers rumor fetches; it
// forwards nothing.
func (e *Engine) stepTree(now time.Time, env *wire.Envelope) error {
	switch b := env.Body.(type) {
	case *wire.Envelope_PlumGossip:
		return e.stepTreeGossip(now, env.From, b.PlumGossip)
	case *wire.Envelope_PlumIhave:
		if e.cfg.Plumtree {
			e.tree.IHave(now, env.From, b.PlumIhave.Ids)
		}
	case *wire.Envelope_PlumPrune:
		e.tree.Prune(env.From)
	case *wire.Envelope_PlumGraft:
		if err := e.tree.Graft(now, env.From, b.PlumGraft.Ids); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	return nil
}

// stepTreeGossip merges the records of a GOSSIP by the common path (merge:
// limits, clock skew, signatures) and tells the tree which were new, to
// forward, and which this node held already, which prune the link.
func (e *Engine) stepTreeGossip(now time.Time, from string, g *wire.PlumGossip) error {
	changed, refused, err := e.merge(now, from, g.Records)
	if err != nil {
		return err
	}
	e.noteArrivals(g.Records, changed, ViaPlumtree)
	if !e.cfg.Plumtree {
		return refused
	}
	recs := make([]store.Record, len(g.Records))
	held := make([]bool, len(g.Records))
	for i, w := range g.Records {
		recs[i] = w.Store()
		if !e.signing() {
			recs[i].Sig = nil
		}
		if changed[i] {
			held[i] = true
			continue
		}
		// Not new: held already (a duplicate), or refused.
		cur, ok, err := e.st.Get(w.Key)
		if err != nil {
			return fmt.Errorf("engine: read %q for plumtree: %w", w.Key, err)
		}
		held[i] = ok && cur.Version.Compare(recs[i].Version) >= 0
	}
	e.tree.Gossip(now, from, g.Reply, recs, changed, held)
	return refused
}

// treeReceived tells the tree of a record this node holds however it came,
// so that its announcements are not grafted.
func (e *Engine) treeReceived(key []byte, v store.Version) {
	if e.cfg.Plumtree {
		e.tree.Received(key, v)
	}
}
