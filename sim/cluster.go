// Package sim runs many hearsay engines, the same code the runtime ships,
// in one process on a virtual clock and a virtual network.
//
// There is no goroutine per node and no wall-clock read: a single event
// queue orders message deliveries and timer ticks by virtual time, ties
// broken by insertion order, and every random choice (the network's and each
// engine's) comes from generators seeded from the cluster seed. The same
// seed gives the same run, bit for bit.
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
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// Epoch is virtual time zero: a fixed instant, so that versions and outputs
// do not depend on when a simulation runs.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Options configures the virtual network.
type Options struct {
	// Seed seeds every random choice of the run.
	Seed uint64
	// Latency is the one-way delay of every message.
	Latency time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) to each message,
	// which also reorders them.
	Jitter time.Duration
	// Loss is the probability that a message is lost.
	Loss float64
	// Delay, if set, draws each message's delay instead of Latency and
	// Jitter.
	Delay func(*rand.Rand) time.Duration
	// Duplicate is the probability that a message that is not lost is
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
	busy   map[[2]*Node]time.Time // when each directed link is free, with Bandwidth
	ca     *certs.MemoryCA        // with Options.Signed

	// OnChange, if set, is called for every record that changes a node's
	// store (local writes and merged remote records), at the virtual time
	// it happens.
	OnChange func(n *Node, r store.Record)
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
	// commits as the runtime does: messages marked AfterSync leave, and
	// writes are acknowledged, once the sync covering them completes;
	// changes made while a sync is in flight share the next one (group
	// commit); a crash loses every change no completed sync covered. 0: a
	// sync is instant, so a crash loses nothing.
	SyncDelay time.Duration
	// Mangle, if set, rewrites every message the node's engine sends: the
	// messages returned are sent instead. How the simulator makes a node
	// byzantine while it runs the real engine.
	Mangle func(engine.Message) []engine.Message

	disk     *disk
	syncs    []*syncOp // in flight (the first) and queued (at most one more)
	syncFree time.Time // when the sync in flight completes

	c      *Cluster
	index  int // in Cluster.nodes
	cfg    engine.Config
	up     bool
	tickAt time.Time
	boots  uint64
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
	n.up = true
	n.c.liveAt[n] = len(n.c.live)
	n.c.live = append(n.c.live, n)
	n.tickAt = time.Time{}
	n.flush()
	return nil
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
	syncs := n.syncs
	n.syncs, n.syncFree = nil, time.Time{}
	for _, op := range syncs {
		for _, done := range op.done {
			done(ErrCrashed)
		}
	}
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
	n.Engine.Join(n.now(), addrs)
	n.flush()
}

// Leave makes the node announce a graceful departure.
func (n *Node) Leave() error {
	err := n.Engine.Leave(n.now())
	n.flush()
	return err
}

// Put writes key=value on the node.
func (n *Node) Put(key, value string) (store.Record, error) {
	return n.write([]byte(key), []byte(value), false)
}

// Delete deletes key on the node.
func (n *Node) Delete(key string) (store.Record, error) { return n.write([]byte(key), nil, true) }

func (n *Node) write(key, value []byte, tomb bool) (store.Record, error) {
	if !n.up {
		return store.Record{}, fmt.Errorf("sim: %s is down", n.Name)
	}
	r, err := n.Engine.Write(n.now(), key, value, tomb)
	if err != nil {
		return r, err
	}
	if err := n.Engine.Tick(n.now()); err != nil {
		return r, err
	}
	n.flush()
	return r, nil
}

// QuerySpread asks every live member which version of each key it holds
// (engine.QuerySpread); the answers reach Cluster.OnSpread.
func (n *Node) QuerySpread(keys ...string) (id uint64, asked []string, err error) {
	bs := make([][]byte, len(keys))
	for i, k := range keys {
		bs[i] = []byte(k)
	}
	id, asked, err = n.Engine.QuerySpread(bs)
	n.flush()
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

// flush carries the engine's Ready out: messages onto the network, and the
// next tick onto the event queue.
func (n *Node) flush() {
	if !n.up {
		return
	}
	rd := n.Engine.Ready()
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
	var after []engine.Message
	for _, m := range rd.Messages {
		if m.AfterSync {
			after = append(after, m)
		} else {
			n.c.send(n, m)
		}
	}
	if n.disk.pending() || len(after) > 0 {
		if !n.sync(after) {
			return // the sync failed and the node stopped
		}
	}
	if d := n.Engine.Deadline(); !d.IsZero() && (n.tickAt.IsZero() || d.Before(n.tickAt)) {
		if d.Before(n.c.now) {
			d = n.c.now
		}
		n.tickAt = d
		n.c.push(event{at: d, tick: n})
	}
}

// syncOp is one sync of a node's store: when it completes, the changes
// before pos are durable, msgs leave and done learns it.
type syncOp struct {
	n     *Node
	boots uint64
	pos   int
	at    time.Time
	msgs  []engine.Message
	done  []func(error)
}

// sync makes the changes so far durable, then sends msgs: at once without
// SyncDelay, else when a sync covering them completes. It reports false
// when the sync failed and the node stopped.
func (n *Node) sync(msgs []engine.Message) bool {
	if n.SyncDelay <= 0 && len(n.syncs) == 0 {
		if err := n.disk.Sync(); err != nil {
			n.failStop(err)
			return false
		}
		for _, m := range msgs {
			n.c.send(n, m)
		}
		return true
	}
	if len(n.syncs) == 2 {
		// Group commit: the queued sync has not started; it takes these
		// changes too.
		op := n.syncs[1]
		op.pos = n.disk.mark()
		op.msgs = append(op.msgs, msgs...)
		return true
	}
	start := n.c.now
	if n.syncFree.After(start) {
		start = n.syncFree
	}
	op := &syncOp{n: n, boots: n.boots, pos: n.disk.mark(), at: start.Add(n.SyncDelay), msgs: msgs}
	n.syncFree = op.at
	n.syncs = append(n.syncs, op)
	n.c.push(event{at: op.at, sync: op})
	return true
}

// completeSync is the event of a sync completing.
func (n *Node) completeSync(op *syncOp) {
	if !n.up || n.boots != op.boots || len(n.syncs) == 0 || n.syncs[0] != op {
		return // the node crashed meanwhile
	}
	if n.disk.syncErr {
		n.failStop(fmt.Errorf("sync: %w", ErrDiskIO))
		return
	}
	n.syncs = n.syncs[1:]
	n.disk.commit(op.pos)
	for _, m := range op.msgs {
		n.c.send(n, m)
	}
	for _, done := range op.done {
		done(nil)
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

// WhenDurable calls done once every change the node made so far is
// durable (nil), or when the node crashes first (ErrCrashed): how a client
// of the simulated node learns whether its write was acknowledged.
func (n *Node) WhenDurable(done func(error)) {
	switch {
	case !n.up:
		done(ErrCrashed)
	case len(n.syncs) == 0:
		done(nil)
	default:
		op := n.syncs[len(n.syncs)-1]
		op.done = append(op.done, done)
	}
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
	if c.cut[[2]string{from.Addr, m.To}] || (c.Blocked != nil && c.Blocked(from.Addr, m.To)) ||
		(c.opts.Loss > 0 && c.rng.Float64() < c.opts.Loss) {
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
	if c.opts.Duplicate > 0 && c.rng.Float64() < c.opts.Duplicate {
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
		c.push(event{at: c.now.Add(ser + d), to: m.To, from: from.Name, frame: frame})
	}
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
	if n := ev.tick; n != nil {
		if !n.up || !n.tickAt.Equal(ev.at) {
			return true, nil // stale: a newer tick was scheduled, or the node crashed
		}
		n.tickAt = time.Time{}
		if err := n.Engine.Tick(n.now()); err != nil {
			return false, fmt.Errorf("sim: %s tick: %w", n.Name, err)
		}
		n.flush()
		return true, nil
	}
	n := c.byAddr[ev.to]
	if n == nil || !n.up {
		c.stats.Lost++
		return true, nil
	}
	env, err := wire.Unmarshal(ev.frame, 0)
	if err != nil {
		// Only byzantine nodes send frames that do not decode: the driver
		// reports them against their sender, as the runtime would a peer
		// it can attribute a bad frame to.
		if err := n.Engine.Offence(n.now(), ev.from, trust.Undecodable); err != nil {
			return false, fmt.Errorf("sim: %s: %w", n.Name, err)
		}
		n.flush()
		return true, nil
	}
	c.stats.Delivered++
	// Refusals (bad records) are the engine's business and are counted in
	// its stats; the simulation goes on.
	_ = n.Engine.Step(n.now(), env)
	if err := n.Engine.Tick(n.now()); err != nil {
		return false, fmt.Errorf("sim: %s tick: %w", n.Name, err)
	}
	n.flush()
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
	tick  *Node   // a timer tick for this node, or
	to    string  // a message delivery to this address
	from  string  // from this node
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
