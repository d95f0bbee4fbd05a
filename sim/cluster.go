// Package sim runs many hearsay nodes, the engine and driver core the
// runtime ships, in one process on a virtual clock, a virtual network and
// a virtual disk.
//
// There is no goroutine per node and no wall-clock read: a single event
// queue orders message deliveries, node runs and sync completions by
// virtual time, ties broken by insertion order, and every random choice
// (the network's and each engine's) comes from generators seeded from the
// cluster seed. The same seed gives the same run, bit for bit.
//
// A simulated node is driven by the runtime's driver core
// (internal/driver): its loop takes inputs in batches, makes a batch's
// writes together, ticks, sends at once what waits for no sync, and
// releases the rest when the sync covering it completes. When a node runs:
// a message delivered to it is queued in its inbox and wakes its loop at
// that virtual instant (a run event queued behind the events already due
// then), so every message that arrives at the same instant before the run
// is taken in the same batch, up to driver.MaxBatch, as a runtime loop
// finds them queued in its channel; a timer wakes it at the engine's
// deadline; a client call (Put, Delete, Join, Leave, QuerySpread) runs it
// at once, with whatever is queued. The loop itself takes no virtual time
// (ProcessingDelay models a node short of CPU); a sync takes SyncDelay,
// during which the loop goes on and later batches wait for the next sync
// (group commit).
package sim

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/driver"
	"github.com/hearsaydb/hearsay/internal/transport"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// Epoch is virtual time zero: a fixed instant, so that versions and outputs
// do not depend on when a simulation runs.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Options configures the virtual network.
//
// The network carries frames as the runtime's transport does
// (internal/transport): a frame of at most MaxPacket bytes is a UDP
// datagram, which Loss, Duplicate and Jitter (reordering) apply to; a
// larger one travels over the sender's TCP stream to that peer, which
// neither loses, duplicates nor reorders it: it is lost only when the link
// is cut or blocked when it is sent or when it would arrive (the stream
// broken mid-way), or when its receiver is down. Its delay is drawn as a
// datagram's, but it never arrives before a frame sent before it on the
// same stream.
type Options struct {
	// Seed seeds every random choice of the run.
	Seed uint64
	// Latency is the one-way delay of every message.
	Latency time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) to each message,
	// which also reorders them.
	Jitter time.Duration
	// Loss is the probability that a datagram is lost.
	Loss float64
	// Delay, if set, draws each message's delay instead of Latency and
	// Jitter.
	Delay func(*rand.Rand) time.Duration
	// Duplicate is the probability that a datagram that is not lost is
	// delivered twice, the copy with its own delay.
	Duplicate float64
	// Bandwidth, if positive, is each directed link's capacity in bytes per
	// second: a message waits for the link to finish the messages before it,
	// then takes its size divided by Bandwidth to serialize, before its
	// delay starts.
	Bandwidth int64
	// DigestCells sizes each node's anti-entropy digest (see memstore);
	// 0 is memstore's default. Runs without anti-entropy set it to 1: at
	// 100,000 nodes the default digests alone would take gigabytes.
	DigestCells int
	// MaxPacket is the largest frame sent as a datagram; larger ones go
	// over TCP. 0 means the transport's, transport.DefaultMaxPacket (1400).
	MaxPacket int
	// Signed makes a certificate cluster: every node gets a certificate from
	// an in-memory CA derived from Seed (internal/certs.MemoryCA), its node
	// id is the one the certificate binds, and records are signed and
	// verified (engine.Config.Signer).
	Signed bool
}

// NetStats counts the virtual network's traffic.
type NetStats struct {
	Sent       uint64 // messages handed to the network
	Delivered  uint64 // messages delivered to a running node
	Lost       uint64 // messages lost to Loss, partitions or down nodes
	Bytes      uint64 // encoded bytes of the messages sent
	Duplicated uint64 // extra copies delivered by Duplicate
	Streamed   uint64 // messages sent over TCP (larger than MaxPacket)
}

// Cluster is a set of simulated nodes on one virtual network.
type Cluster struct {
	opts   Options
	now    time.Time
	rng    *rand.Rand
	events eventQueue
	seq    uint64
	byAddr map[string]*Node
	byName map[string]*Node
	nodes  []*Node
	cut    map[[2]string]bool // directed links that drop everything
	stats  NetStats
	live   []*Node // running nodes, for the oracle view
	liveAt map[*Node]int
	busy   map[[2]*Node]time.Time  // when each directed link is free, with Bandwidth
	stream map[[2]string]time.Time // when the last frame on each TCP stream arrives
	ca     *certs.MemoryCA         // with Options.Signed

	// OnChange, if set, is called for every record that changes a node's
	// store (local writes and merged remote records), at the virtual time
	// it happens.
	OnChange func(n *Node, r store.Record)
	// OnDurable, if set, is called for every change of a node's store once
	// the sync covering it completes: what the node's watchers would be
	// told, and when.
	OnDurable func(n *Node, r store.Record)
	// OnSend, if set, is called for every message a node hands to the
	// network, before loss is drawn.
	OnSend func(from *Node, m engine.Message, size int)
	// OnMemberEvent, if set, is called for every change in a node's
	// membership view, at the virtual time it happens.
	OnMemberEvent func(n *Node, ev membership.Event)
	// OnSpread, if set, is called for every answer to a node's spread
	// query (Node.QuerySpread) as the node receives it.
	OnSpread func(n *Node, r engine.SpreadReply)
	// Blocked, if set, is asked for every message (after Cut, before loss
	// is drawn) whether the link from one address to another is down: how
	// scenarios model partitions and one-way links over groups of nodes
	// without a Cut per pair.
	Blocked func(from, to string) bool
	// OnRollback, if set, is called when a crash takes back changes of a
	// node's store that no sync had made durable, with the keys whose
	// records changed back.
	OnRollback func(n *Node, keys []string)
	// OnFailStop, if set, is called when a node's sync fails and the node
	// stops (fail-stop, as the runtime does on a failed fsync).
	OnFailStop func(n *Node, err error)
	// OnQuarantine, if set, is called for every quarantine decision of a
	// node's engine, at the virtual time it is made.
	OnQuarantine func(n *Node, ch trust.Change)
	// Tamper, if set, is called for every message a node hands to the
	// network, before it is encoded, with a copy the sender keeps no part
	// of: how tests and adversaries alter what a node sends.
	Tamper func(from *Node, to string, env *wire.Envelope)
}

// ErrCrashed is what a write waiting for its sync learns when its node
// crashes first: it was not acknowledged, and may be lost.
var ErrCrashed = errors.New("sim: node crashed before the write was durable")

// Node is one simulated member: an engine over a memstore on a simulated
// disk. What was synced outlives crashes; what was not is lost (see
// SyncDelay).
type Node struct {
	Name   string
	Addr   string
	Store  store.Store
	Engine *engine.Engine
	// Changes counts records that changed this node's store.
	Changes int
	// ProcessingDelay models a node starved of CPU: every message sent to
	// it waits this long, on top of the network's delay, before it is
	// handled.
	ProcessingDelay time.Duration
	// ClockOffset and ClockDrift model a wrong wall clock: the node's
	// engine reads virtual time plus ClockOffset plus ClockDrift times the
	// virtual time elapsed since Epoch (a drift of 1e-4 gains 360 ms an
	// hour).
	ClockOffset time.Duration
	ClockDrift  float64
	// SyncDelay is how long each sync of the store takes. The node
	// commits as the runtime does (its driver core): messages marked
	// AfterSync leave, and writes are acknowledged, once the sync covering
	// them completes; batches committed while a sync is in flight share the
	// next one (group commit); a crash loses every change no completed sync
	// covered. 0: a sync is instant, so a crash loses nothing.
	SyncDelay time.Duration
	// Mangle, if set, rewrites every message the node's engine sends: the
	// messages returned are sent instead. How the simulator makes a node
	// byzantine while it runs the real engine.
	Mangle func(engine.Message) []engine.Message

	disk    *disk
	core    *driver.Core
	inbox   []delivery // delivered, not yet taken by the loop
	syncing *syncOp    // the sync in flight

	c     *Cluster
	index int // in Cluster.nodes
	cfg   engine.Config
	up    bool
	runAt time.Time // the next run event queued, zero if none
	boots uint64
}

// delivery is a frame delivered to a node's inbox.
type delivery struct {
	from  string
	frame []byte
}

// New returns an empty cluster at virtual time Epoch.
func New(opts Options) *Cluster {
	return &Cluster{
		opts:   opts,
		now:    Epoch,
		rng:    rand.New(rand.NewPCG(opts.Seed, 0x9e3779b97f4a7c15)),
		byAddr: map[string]*Node{},
		byName: map[string]*Node{},
		cut:    map[[2]string]bool{},
		liveAt: map[*Node]int{},
		busy:   map[[2]*Node]time.Time{},
		stream: map[[2]string]time.Time{},
	}
}

// Now returns the virtual time.
func (c *Cluster) Now() time.Time { return c.now }

// Stats returns the network counters.
func (c *Cluster) Stats() NetStats { return c.stats }

// Nodes returns the nodes in the order they were added.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// AddNode starts a node named name with the default engine configuration,
// changed by configure if it is not nil. Its address is name itself.
func (c *Cluster) AddNode(name string, configure func(*engine.Config)) (*Node, error) {
	if _, dup := c.byName[name]; dup {
		return nil, fmt.Errorf("sim: node %q exists", name)
	}
	cfg := engine.DefaultConfig()
	cfg.Name = name
	cfg.Addr = name
	cfg.NodeID = uint64(len(c.nodes) + 1)
	if c.opts.Signed {
		id, err := c.identity(name)
		if err != nil {
			return nil, err
		}
		cfg.Signer, cfg.NodeID = id, id.NodeID()
	}
	if configure != nil {
		configure(&cfg)
	}
	// Simulated nodes have no watchers: they keep no change log.
	d := &disk{Store: memstore.NewWithOptions(memstore.Options{DigestCells: c.opts.DigestCells, ChangeLog: store.ChangeLogLimits{Entries: -1}})}
	n := &Node{Name: name, Addr: cfg.Addr, Store: d, disk: d, c: c, cfg: cfg, index: len(c.nodes)}
	if err := n.boot(); err != nil {
		return nil, err
	}
	c.byAddr[n.Addr] = n
	c.byName[n.Name] = n
	c.nodes = append(c.nodes, n)
	return n, nil
}

func (n *Node) boot() error {
	n.boots++
	seed := n.c.opts.Seed ^ uint64(n.index+1)*0x9e3779b97f4a7c15
	e, err := engine.New(n.cfg, n.Store, rand.New(rand.NewPCG(seed, n.boots)), n.c.now)
	if err != nil {
		return fmt.Errorf("sim: start %s: %w", n.Name, err)
	}
	n.Engine = e
	n.core = driver.New(e, simOutputs{n})
	n.up = true
	n.c.liveAt[n] = len(n.c.live)
	n.c.live = append(n.c.live, n)
	n.runAt = time.Time{}
	return n.run()
}

// simOutputs is where a simulated node's driver core releases: the
// virtual network, and Cluster.OnDurable.
type simOutputs struct{ n *Node }

func (o simOutputs) Send(msgs []engine.Message) {
	for _, m := range msgs {
		o.n.c.send(o.n, m)
	}
}

func (o simOutputs) Durable(changes []store.Record) {
	if f := o.n.c.OnDurable; f != nil {
		for _, r := range changes {
			f(o.n, r)
		}
	}
}

// now returns virtual time, the clock the node's timers run on, and first
// sets its engine's wall clock (the one that stamps versions and clock
// samples) ClockOffset and ClockDrift away from it: a wrong wall clock, as
// a real node's whose timers run on the monotonic clock.
func (n *Node) now() time.Time {
	if n.Engine != nil {
		n.Engine.SetWallOffset(n.skew(n.c.now))
	}
	return n.c.now
}

// skew is how far the node's clock is from virtual time at t.
func (n *Node) skew(t time.Time) time.Duration {
	return n.ClockOffset + time.Duration(n.ClockDrift*float64(t.Sub(Epoch)))
}

// Up reports whether the node is running.
func (n *Node) Up() bool { return n.up }

// Crash stops the node at once; messages to it are lost. Its store keeps
// what was synced and loses the rest; writes waiting for a sync learn
// ErrCrashed.
func (n *Node) Crash() {
	if !n.up {
		return
	}
	n.up = false
	n.Engine = nil
	clear(n.inbox)
	n.inbox = n.inbox[:0]
	if op := n.syncing; op != nil {
		n.syncing = nil
		driver.Abandon(op.work, ErrCrashed)
	}
	n.core.Stop(ErrCrashed)
	n.core = nil
	keys, err := n.disk.rollback()
	if err != nil {
		panic(fmt.Sprintf("sim: %s: %v", n.Name, err)) // memstore does not fail
	}
	if len(keys) > 0 && n.c.OnRollback != nil {
		n.c.OnRollback(n, keys)
	}
	// Swap-remove from the live set.
	c := n.c
	i := c.liveAt[n]
	last := c.live[len(c.live)-1]
	c.live[i] = last
	c.liveAt[last] = i
	c.live = c.live[:len(c.live)-1]
	delete(c.liveAt, n)
}

// Restart boots a crashed node again on its kept store.
func (n *Node) Restart() error {
	if n.up {
		return fmt.Errorf("sim: %s is running", n.Name)
	}
	return n.boot()
}

// Join makes the node join through the given seed node names.
func (n *Node) Join(seeds ...string) {
	addrs := make([]string, len(seeds))
	for i, s := range seeds {
		addrs[i] = n.c.byName[s].Addr
	}
	n.core.Flush()
	n.Engine.Join(n.now(), addrs)
	n.runNow()
}

// Leave makes the node announce a graceful departure.
func (n *Node) Leave() error {
	n.core.Flush()
	err := n.Engine.Leave(n.now())
	n.runNow()
	return err
}

// Put writes key=value on the node.
func (n *Node) Put(key, value string) (store.Record, error) {
	return n.Write(key, value, false, nil)
}

// Delete deletes key on the node.
func (n *Node) Delete(key string) (store.Record, error) { return n.Write(key, "", true, nil) }

// Write makes a client write (a delete if del) on the node, as a client
// of the runtime does: the node's loop runs at once and takes the write
// with whatever else is queued. It returns the record written, or why the
// write was refused; acked, if not nil, learns later whether it was
// acknowledged (nil once its sync completes) or lost (ErrCrashed).
func (n *Node) Write(key, value string, del bool, acked func(error)) (store.Record, error) {
	if !n.up {
		return store.Record{}, fmt.Errorf("sim: %s is down", n.Name)
	}
	op := engine.WriteOp{Key: []byte(key), Tombstone: del}
	if !del {
		op.Value = []byte(value)
	}
	var rec store.Record
	var refused error
	made := false
	n.core.Write(n.now(), op, func(r store.Record) { rec, made = r, true }, func(r store.Record, err error) {
		if !made {
			rec, refused = r, err
			return
		}
		if acked != nil {
			acked(err)
		}
	})
	if err := n.run(); err != nil {
		return rec, err
	}
	return rec, refused
}

// QuerySpread asks every live member which version of each key it holds
// (engine.QuerySpread); the answers reach Cluster.OnSpread.
func (n *Node) QuerySpread(keys ...string) (id uint64, asked []string, err error) {
	bs := make([][]byte, len(keys))
	for i, k := range keys {
		bs[i] = []byte(k)
	}
	n.core.Flush()
	id, asked, err = n.Engine.QuerySpread(bs)
	n.runNow()
	return id, asked, err
}

// Get returns the node's record for key.
func (n *Node) Get(key string) (store.Record, bool) {
	r, ok, err := n.Store.Get([]byte(key))
	if err != nil {
		panic(fmt.Sprintf("sim: memstore get: %v", err)) // memstore does not fail
	}
	return r, ok
}

// runNow runs the node's loop at once for a client call that returns no
// error of the loop's: a tick that fails is reported by the node's next
// run from the event queue.
func (n *Node) runNow() {
	if err := n.run(); err != nil {
		n.wake(n.c.now)
	}
}

// wake queues a run of the node's loop at t, unless one is queued no later.
func (n *Node) wake(t time.Time) {
	if !n.runAt.IsZero() && !n.runAt.After(t) {
		return
	}
	n.runAt = t
	n.c.push(event{at: t, run: n})
}

// run is one turn of the node's loop, as the runtime's: it takes the
// deliveries queued, up to driver.MaxBatch, steps them, and commits the
// batch through the driver core (the batch's writes, a tick, the messages
// that wait for no sync sent, the rest queued for the next sync); then it
// starts a sync if none is in flight, and queues its next run.
func (n *Node) run() error {
	if !n.up {
		return nil
	}
	now := n.now()
	k := min(len(n.inbox), driver.MaxBatch)
	for i := range k {
		if err := n.stepDelivery(now, n.inbox[i]); err != nil {
			return err
		}
	}
	rest := copy(n.inbox, n.inbox[k:])
	clear(n.inbox[rest:])
	n.inbox = n.inbox[:rest]
	rd, err := n.core.Commit(now)
	if err != nil {
		return fmt.Errorf("sim: %s tick: %w", n.Name, err)
	}
	n.Changes += len(rd.Changes)
	if n.c.OnChange != nil {
		for _, r := range rd.Changes {
			n.c.OnChange(n, r)
		}
	}
	if n.c.OnMemberEvent != nil {
		for _, ev := range rd.MemberEvents {
			n.c.OnMemberEvent(n, ev)
		}
	}
	if n.c.OnQuarantine != nil {
		for _, ch := range rd.Quarantine {
			n.c.OnQuarantine(n, ch)
		}
	}
	if n.c.OnSpread != nil {
		for _, r := range rd.Spread {
			n.c.OnSpread(n, r)
		}
	}
	if n.syncing == nil {
		n.startSync()
	}
	if !n.up {
		return nil // the sync failed and the node stopped
	}
	if len(n.inbox) > 0 {
		n.wake(n.c.now)
	} else if d := n.Engine.Deadline(); !d.IsZero() {
		n.wake(maxTime(d, n.c.now))
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// stepDelivery hands one delivered frame to the node's engine.
func (n *Node) stepDelivery(now time.Time, d delivery) error {
	env, err := wire.Unmarshal(d.frame, 0)
	if err != nil {
		// Only byzantine nodes send frames that do not decode: the driver
		// reports them against their sender, as the runtime would a peer
		// it can attribute a bad frame to.
		if err := n.Engine.Offence(now, d.from, trust.Undecodable); err != nil {
			return fmt.Errorf("sim: %s: %w", n.Name, err)
		}
		return nil
	}
	n.c.stats.Delivered++
	// Refusals (bad records) are the engine's business and are counted in
	// its stats; the simulation goes on.
	_ = n.core.Step(now, env)
	return nil
}

// syncOp is one sync of a node's store: when it completes, the changes
// before pos are durable and the work it took is released.
type syncOp struct {
	n     *Node
	boots uint64
	pos   int
	work  []driver.Work
}

// startSync starts a sync of what the node's driver core has queued, as
// the runtime's syncer does when the loop wakes it: instant without
// SyncDelay, else completing SyncDelay later. A sync with nothing to make
// durable and nothing waiting for it costs nothing.
func (n *Node) startSync() {
	work := n.core.TakeSync()
	if !n.disk.pending() && !waits(work) {
		return
	}
	if n.SyncDelay <= 0 {
		if err := n.disk.Sync(); err != nil {
			driver.Abandon(work, ErrCrashed)
			n.failStop(err)
			return
		}
		n.core.Release(work, nil)
		return
	}
	op := &syncOp{n: n, boots: n.boots, pos: n.disk.mark(), work: work}
	n.syncing = op
	n.c.push(event{at: n.c.now.Add(n.SyncDelay), sync: op})
}

// waits reports whether any of work waits for a sync.
func waits(work []driver.Work) bool {
	for i := range work {
		if !work[i].Empty() {
			return true
		}
	}
	return false
}

// completeSync is the event of a sync completing.
func (n *Node) completeSync(op *syncOp) {
	if !n.up || n.boots != op.boots || n.syncing != op {
		return // the node crashed meanwhile
	}
	if n.disk.syncErr {
		n.failStop(fmt.Errorf("sync: %w", ErrDiskIO))
		return
	}
	n.syncing = nil
	n.disk.commit(op.pos)
	n.core.Release(op.work, nil)
	if n.up && n.core.Queued() {
		n.startSync()
	}
}

// failStop stops a node whose sync failed: it acknowledges nothing more
// and keeps only what earlier syncs made durable.
func (n *Node) failStop(err error) {
	if n.c.OnFailStop != nil {
		n.c.OnFailStop(n, err)
	}
	n.Crash()
}

// Cut drops every message from a to b (one direction) until Mend.
func (c *Cluster) Cut(a, b string) { c.cut[[2]string{a, b}] = true }

// Mend restores the link from a to b.
func (c *Cluster) Mend(a, b string) { delete(c.cut, [2]string{a, b}) }

// Partition cuts every link between the two groups, both ways.
func (c *Cluster) Partition(g1, g2 []string) {
	for _, a := range g1 {
		for _, b := range g2 {
			c.Cut(a, b)
			c.Cut(b, a)
		}
	}
}

// Heal mends every cut link.
func (c *Cluster) Heal() { clear(c.cut) }

// identity returns node name's certificate identity under the cluster's CA.
func (c *Cluster) identity(name string) (*certs.Identity, error) {
	if c.ca == nil {
		ca, err := certs.NewMemoryCA(c.opts.Seed, Epoch)
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		c.ca = ca
	}
	nd, err := c.ca.Node(name)
	if err != nil {
		return nil, fmt.Errorf("sim: certificate of %s: %w", name, err)
	}
	return certs.NewIdentity(nd), nil
}

// Identity returns node name's certificate identity in a signed cluster
// (Options.Signed), whether or not the node exists: what an adversary
// holding a valid certificate signs with.
func (c *Cluster) Identity(name string) (*certs.Identity, error) { return c.identity(name) }

func (c *Cluster) send(from *Node, m engine.Message) {
	if from.Mangle != nil {
		for _, out := range from.Mangle(m) {
			c.transmit(from, out)
		}
		return
	}
	c.transmit(from, m)
}

func (c *Cluster) transmit(from *Node, m engine.Message) {
	if c.Tamper != nil {
		env := proto.Clone(m.Env).(*wire.Envelope)
		c.Tamper(from, m.To, env)
		m.Env = env
	}
	frame, err := wire.Marshal(m.Env)
	if err != nil {
		panic(fmt.Sprintf("sim: engine produced an unencodable message: %v", err))
	}
	c.deliver(from, m, frame)
}

// sendRaw sends bytes that may not decode from one node to an address.
func (c *Cluster) sendRaw(from *Node, to string, frame []byte) {
	c.deliver(from, engine.Message{To: to, Env: &wire.Envelope{}}, frame)
}

// deliver puts frame on the network from a node to m.To.
func (c *Cluster) deliver(from *Node, m engine.Message, frame []byte) {
	c.stats.Sent++
	c.stats.Bytes += uint64(len(frame))
	if c.OnSend != nil {
		c.OnSend(from, m, len(frame))
	}
	tcp := len(frame) > c.maxPacket()
	if tcp {
		c.stats.Streamed++
	}
	if c.down(from.Addr, m.To) || (!tcp && c.opts.Loss > 0 && c.rng.Float64() < c.opts.Loss) {
		c.stats.Lost++
		return
	}
	to := c.byAddr[m.To]
	var ser time.Duration // serialization on a link of limited bandwidth
	if c.opts.Bandwidth > 0 && to != nil {
		link := [2]*Node{from, to}
		start := c.now
		if b := c.busy[link]; b.After(start) {
			start = b
		}
		done := start.Add(time.Duration(float64(len(frame)) * float64(time.Second) / float64(c.opts.Bandwidth)))
		c.busy[link] = done
		ser = done.Sub(c.now)
	}
	copies := 1
	if !tcp && c.opts.Duplicate > 0 && c.rng.Float64() < c.opts.Duplicate {
		copies = 2
		c.stats.Duplicated++
	}
	for range copies {
		d := c.opts.Latency
		if c.opts.Delay != nil {
			d = c.opts.Delay(c.rng)
		} else if c.opts.Jitter > 0 {
			d += time.Duration(c.rng.Int64N(int64(c.opts.Jitter)))
		}
		if to != nil {
			d += to.ProcessingDelay
		}
		at := c.now.Add(ser + d)
		if tcp {
			// A stream delivers in order: after the frames sent on it
			// before, whatever their delays.
			link := [2]string{from.Addr, m.To}
			at = maxTime(at, c.stream[link])
			c.stream[link] = at
		}
		c.push(event{at: at, to: m.To, from: from.Name, tcp: tcp, frame: frame})
	}
}

// maxPacket is the largest frame the network carries as a datagram.
func (c *Cluster) maxPacket() int {
	if c.opts.MaxPacket > 0 {
		return c.opts.MaxPacket
	}
	return transport.DefaultMaxPacket
}

// down reports whether the link from one address to another is cut or
// blocked.
func (c *Cluster) down(from, to string) bool {
	return c.cut[[2]string{from, to}] || (c.Blocked != nil && c.Blocked(from, to))
}

func (c *Cluster) push(ev event) {
	c.seq++
	ev.seq = c.seq
	heap.Push(&c.events, ev)
}

// step processes the next event; false when there is none before limit.
func (c *Cluster) step(limit time.Time) (bool, error) {
	if len(c.events) == 0 || c.events[0].at.After(limit) {
		return false, nil
	}
	ev := heap.Pop(&c.events).(event)
	c.now = ev.at
	if op := ev.sync; op != nil {
		op.n.completeSync(op)
		return true, nil
	}
	if n := ev.run; n != nil {
		if !n.up || !n.runAt.Equal(ev.at) {
			return true, nil // stale: an earlier run was queued, or the node crashed
		}
		n.runAt = time.Time{}
		if len(n.inbox) == 0 {
			if d := n.Engine.Deadline(); d.IsZero() || d.After(c.now) {
				// Woken for input a client call has taken already: the
				// loop sleeps on until its deadline.
				if !d.IsZero() {
					n.wake(d)
				}
				return true, nil
			}
		}
		return true, n.run()
	}
	n := c.byAddr[ev.to]
	if n == nil || !n.up || (ev.tcp && c.down(c.byName[ev.from].Addr, ev.to)) {
		// A datagram in flight when its link is cut still arrives; a
		// stream cut meanwhile is broken, and what it carried is lost.
		c.stats.Lost++
		return true, nil
	}
	n.inbox = append(n.inbox, delivery{from: ev.from, frame: ev.frame})
	n.wake(c.now)
	return true, nil
}

// RunFor advances virtual time by d, processing every event on the way.
func (c *Cluster) RunFor(d time.Duration) error {
	limit := c.now.Add(d)
	for {
		ok, err := c.step(limit)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
	}
	c.now = limit
	return nil
}

// RunUntil processes events until cond holds (checked after each event) or
// d of virtual time has passed. It reports whether cond held.
func (c *Cluster) RunUntil(d time.Duration, cond func() bool) (bool, error) {
	limit := c.now.Add(d)
	for !cond() {
		ok, err := c.step(limit)
		if err != nil {
			return false, err
		}
		if !ok {
			c.now = limit
			return cond(), nil
		}
	}
	return true, nil
}

type event struct {
	at    time.Time
	seq   uint64
	sync  *syncOp // a sync completing, or
	run   *Node   // a turn of this node's loop, or
	to    string  // a message delivery to this address
	from  string  // from this node
	tcp   bool    // over a TCP stream, not a datagram
	frame []byte
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	ev := old[len(old)-1]
	*q = old[:len(old)-1]
	return ev
}

// oracle is a node's member view read from the simulator's true live set
// (--sampler oracle): no membership protocol runs, and partners are drawn
// uniformly from the running nodes, as Demers et al.'s model draws them. It
// is injected through engine.Config.View, the interface the membership
// protocol's view implements.
type oracle struct {
	c    *Cluster
	self string
}

// Handle takes nothing: the oracle's view is the simulator's, not learned.
func (o oracle) Handle(time.Time, *wire.Envelope) (bool, error) { return false, nil }

// Tick has no timers to run: nothing is probed.
func (o oracle) Tick(time.Time) {}

// Deadline is never: the oracle has no timers.
func (o oracle) Deadline() time.Time { return time.Time{} }

// Piggyback adds nothing: there is no membership news to spread.
func (o oracle) Piggyback(*wire.Envelope) {}

// Sample draws k distinct running nodes other than self uniformly.
func (o oracle) Sample(rng *rand.Rand, k int) []string {
	live := o.c.live
	n := len(live)
	out := make([]string, 0, k)
	if k >= n-1 {
		for _, nd := range live {
			if nd.Name != o.self {
				out = append(out, nd.Name)
			}
		}
		return out
	}
	for len(out) < k {
		nd := live[rng.IntN(n)]
		if nd.Name == o.self || slices.Contains(out, nd.Name) {
			continue
		}
		out = append(out, nd.Name)
	}
	return out
}

// LivePeers lists the running nodes other than self.
func (o oracle) LivePeers() []string {
	out := make([]string, 0, len(o.c.live))
	for _, nd := range o.c.live {
		if nd.Name != o.self {
			out = append(out, nd.Name)
		}
	}
	slices.Sort(out)
	return out
}

// HeardPeers is LivePeers: the oracle knows every running node first-hand.
func (o oracle) HeardPeers() []string { return o.LivePeers() }

// Addr returns the address of the node named name.
func (o oracle) Addr(name string) (string, bool) {
	n := o.c.byName[name]
	if n == nil {
		return "", false
	}
	return n.Addr, true
}
