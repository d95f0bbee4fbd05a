// Package driver is the part of a hearsay node between its protocol engine
// and the world, shared by the runtime (package hearsay) and the simulator
// (package sim), so that a simulated node commits as the shipped one does:
// how inputs are taken in batches, how a batch's local writes are made
// together, and what of a batch's output leaves at once and what waits for
// the store's sync (docs/ARCHITECTURE.md, "One protocol engine, two
// drivers").
//
// A Core does no I/O of its own. Its driver feeds it inputs from one
// goroutine (the loop), and hands it three things: where messages go
// (Outputs.Send: the transport, or the virtual network), where durable
// changes are announced (Outputs.Durable: watchers, or the simulator's
// checkers), and the sync itself, which the driver runs between TakeSync
// and Release: the runtime's syncer goroutine calls the store's fsync, the
// simulator's disk model lets virtual time pass. TakeSync and Release may
// be called from another goroutine than the loop.
package driver

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// MaxBatch bounds the inputs a loop takes into one batch: whatever is
// queued when the loop runs, up to this many, is stepped together and
// committed with one tick and one sync. The bound keeps a flood of inputs
// from delaying the tick, and so failure detection, without limit.
const MaxBatch = 512

// Outputs is where a Core releases what leaves the node.
type Outputs interface {
	// Send hands messages to the network, in order. Messages that wait for
	// no sync are sent from the loop (Commit); the rest from Release.
	Send(msgs []engine.Message)
	// Durable announces changes that a sync has just made durable, in the
	// order they were made (watchers are told only of durable changes).
	Durable(changes []store.Record)
}

// Ack is a local write's answer: called once, with the record and nil
// when the write is durable, or with why it was refused or is not durable.
type Ack func(rec store.Record, err error)

// ErrNotDurable wraps the error of a failed sync in the answer of every
// write the sync was to cover.
var ErrNotDurable = errors.New("write not durable")

// Core is one node's driver logic around its engine.
type Core struct {
	eng *engine.Engine
	out Outputs

	// The batch's local writes, made together at the commit or before a
	// request of the driver's own (Flush).
	ops  []engine.WriteOp
	acks []pendingWrite
	made []written // made in this batch, answered after its sync
	now  time.Time

	early []engine.Message // scratch: the messages sent at once

	mu    sync.Mutex
	queue []Work // committed batches waiting for a sync
	spare []Work // a released queue, for the next one
}

type written struct {
	rec store.Record
	ack Ack
}

// pendingWrite is a write of the batch not made yet.
type pendingWrite struct {
	made func(store.Record)
	ack  Ack
}

// Work is what committed batches leave waiting for a sync: the messages
// that carry or acknowledge records (engine.Message.AfterSync), the
// changes to announce and the writes to acknowledge.
type Work struct {
	msgs    []engine.Message
	changes []store.Record
	writes  []written
}

// Empty reports whether w waits for nothing: a sync of it would make
// durable only what the store itself holds.
func (w *Work) Empty() bool {
	return len(w.msgs) == 0 && len(w.changes) == 0 && len(w.writes) == 0
}

// New returns a Core around eng, releasing through out.
func New(eng *engine.Engine, out Outputs) *Core {
	return &Core{eng: eng, out: out}
}

// Engine returns the engine the Core drives; only the loop may use it.
func (c *Core) Engine() *engine.Engine { return c.eng }

// Write adds a local write to the batch. It is made with the batch's
// other writes in one engine.WriteBatch at the commit (or at a Flush);
// made, if not nil, learns its record once it is made (applied, not yet
// durable), and ack learns its outcome. Envelopes stepped meanwhile do not wait for it:
// merging is last-writer-wins whatever the order, and writes made together
// are applied in one store call and, in a certificate cluster, signed
// together.
func (c *Core) Write(now time.Time, op engine.WriteOp, made func(store.Record), ack Ack) {
	c.ops = append(c.ops, op)
	c.acks = append(c.acks, pendingWrite{made: made, ack: ack})
	c.now = now
}

// Flush makes the writes added so far: one store apply, and in a
// certificate cluster their signatures together. A refused write is
// answered at once; the others wait for the batch's sync. Commit flushes
// first; a driver calls Flush before handing the engine a request of its
// own (a join, a leave), so that the writes before it are made first.
func (c *Core) Flush() {
	if len(c.ops) == 0 {
		return
	}
	recs, errs := c.eng.WriteBatch(c.now, c.ops)
	for i, w := range c.acks {
		if errs[i] != nil {
			w.ack(recs[i], errs[i])
			continue
		}
		if w.made != nil {
			w.made(recs[i])
		}
		c.made = append(c.made, written{rec: recs[i], ack: w.ack})
	}
	clear(c.ops)
	clear(c.acks)
	c.ops, c.acks = c.ops[:0], c.acks[:0]
}

// Step hands the engine one received envelope and returns what the engine
// refused of it.
func (c *Core) Step(now time.Time, env *wire.Envelope) error {
	return c.eng.Step(now, env)
}

// Commit ends the batch: it makes the batch's writes, ticks the engine,
// sends at once the messages that depend on no sync (probes and acks,
// membership, gossip, digests and requests: nothing in them carries or
// acknowledges a record this batch may have applied), and queues the rest
// for the next sync: the AfterSync messages, the changes to announce and
// the writes to acknowledge. It returns the engine's Ready, whose
// messages are taken care of, for the driver's own use of the rest, and
// the tick's error.
func (c *Core) Commit(now time.Time) (engine.Ready, error) {
	c.Flush()
	err := c.eng.Tick(now)
	rd := c.eng.Ready()
	w := Work{changes: rd.Changes, writes: c.made}
	c.made = nil
	early := c.early[:0]
	for _, m := range rd.Messages {
		if m.AfterSync {
			w.msgs = append(w.msgs, m)
		} else {
			early = append(early, m)
		}
	}
	if len(early) > 0 {
		c.out.Send(early)
	}
	clear(early)
	c.early = early[:0]
	c.mu.Lock()
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	return rd, err
}

// TakeSync takes every committed batch not yet taken: what the next sync
// covers. Whatever the engine applied before the call is durable once the
// sync that follows it succeeds, and batches committed meanwhile wait for
// the sync after (group commit).
func (c *Core) TakeSync() []Work {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.queue
	c.queue, c.spare = c.spare, nil
	return w
}

// Queued reports whether committed batches wait for a sync.
func (c *Core) Queued() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) > 0
}

// Release ends the sync of work taken by TakeSync. If the sync succeeded,
// the writes are acknowledged first (a write waits for its own sync, not
// for its copies to reach every peer), then the changes announced, then
// the messages sent. If it failed, nothing is sent or announced, and every
// write learns the error. The caller keeps no part of work after.
func (c *Core) Release(work []Work, err error) {
	defer c.recycle(work)
	if err != nil {
		Abandon(work, fmt.Errorf("%w: %w", ErrNotDurable, err))
		return
	}
	for _, w := range work {
		for _, wr := range w.writes {
			wr.ack(wr.rec, nil)
		}
		if len(w.changes) > 0 {
			c.out.Durable(w.changes)
		}
	}
	for _, w := range work {
		if len(w.msgs) > 0 {
			c.out.Send(w.msgs)
		}
	}
}

// recycle keeps a released queue's array for the next one: a busy node
// commits thousands of batches a second.
func (c *Core) recycle(work []Work) {
	clear(work)
	c.mu.Lock()
	if c.spare == nil {
		c.spare = work[:0]
	}
	c.mu.Unlock()
}

// Abandon answers every write of work with err, and drops the rest: what
// a node that stops before the sync does with what waited for it.
func Abandon(work []Work, err error) {
	for _, w := range work {
		for _, wr := range w.writes {
			wr.ack(wr.rec, err)
		}
	}
}

// Stop answers with err every write of the Core not yet durable and not
// taken by a sync (the batch's, and the committed batches'), as a node
// that stops: a crash, or a Close whose last sync failed.
func (c *Core) Stop(err error) {
	for i, w := range c.acks {
		w.ack(store.Record{Key: c.ops[i].Key}, err)
	}
	c.ops, c.acks = nil, nil
	for _, wr := range c.made {
		wr.ack(wr.rec, err)
	}
	c.made = nil
	Abandon(c.TakeSync(), err)
}
