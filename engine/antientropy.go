package engine

import (
	"fmt"
	"time"

	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/engine/rumor"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// initAE starts anti-entropy over the engine's store, picking partners the
// way rumor mongering does. Config.AntiEntropy decides whether this node
// starts exchanges; it answers peers' either way.
func (e *Engine) initAE(now time.Time, sample rumor.Sampler) error {
	cfg := e.cfg.AE
	cfg.Enabled = e.cfg.AntiEntropy
	ae, err := antientropy.New(e.cfg.Name, cfg, e.st, e.rng, now, antientropy.Sampler(sample), e.sendPeer, e.mergeAE)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.ae = ae
	ae.SetOnStall(e.onStall)
	return nil
}

// stepAE hands an anti-entropy message to the reconciler.
func (e *Engine) stepAE(now time.Time, env *wire.Envelope) error {
	if err := e.ae.Step(now, env.From, env); err != nil {
		e.aeOffence(now, env.From, err)
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// tickAE runs anti-entropy's timers.
func (e *Engine) tickAE(now time.Time) error {
	if err := e.ae.Tick(now); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// mergeAE merges records received by anti-entropy by the same rule and
// checks as every received record, and returns those new to this node.
// Refused records are counted in Stats.RecordsRefused and skipped; the
// exchange goes on.
func (e *Engine) mergeAE(now time.Time, peer string, ws []*wire.Record) ([]store.Record, error) {
	changed, _, err := e.merge(now, peer, ws)
	if err != nil {
		return nil, err
	}
	e.noteArrivals(ws, changed, ViaAntiEntropy)
	var repaired []store.Record
	for i, c := range changed {
		if c {
			repaired = append(repaired, ws[i].Store())
		}
	}
	e.onRepaired(now, repaired)
	return repaired, nil
}

// onRepaired is called with the records anti-entropy found new to this
// node, already merged and counted (Stats.AntiEntropy.Repaired): the hook
// where rumor mongering may take them up, so that a repair spreads fast.
func (e *Engine) onRepaired(now time.Time, recs []store.Record) {
	if !e.cfg.RumorRepairs {
		return
	}
	for _, r := range recs {
		if e.cfg.RumorMongering {
			e.monger.Add(now, r)
		}
		if e.cfg.Plumtree {
			e.tree.Add(now, r)
		}
	}
}

// Serving reports whether this node may serve reads and writes. It is false
// while a node that was stopped for longer than the tombstone grace period
// has not yet completed a full pull from a peer: until then it may hold
// records deleted elsewhere whose death certificates are gone.
func (e *Engine) Serving() bool { return e.ae.Serving() }
