package sim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// maxLatencySamples bounds the delivery latencies kept for percentiles and
// the CDF; beyond it a uniform reservoir sample is kept (mean and maximum
// stay exact).
const maxLatencySamples = 1 << 21

// leaveGrace is how long a leaving node keeps running after announcing its
// departure, for the announcement to be acknowledged, before it stops.
const leaveGrace = time.Second

// runner runs one seed of a scenario: it drives the cluster through the
// scripted actions (workload, events, churn) step by step, and tracks when
// every update reaches every node.
type runner struct {
	s        Scenario
	m        mechanisms
	c        *Cluster
	rng      *rand.Rand // workload, churn and random node choices
	start    time.Time
	unit     float64
	progress func(Progress)
	res      *RunResult

	actions   actionQueue
	aseq      uint64
	lastScrip time.Time // the last scripted action's time

	// Delivery tracking. An update is delivered to a node when the node's
	// store first holds its version or a newer one of its key.
	keys     map[string]*keyTrack
	keyNames []string // written keys, in order of first write, for deletes
	covered  []int32  // per node index: updates delivered
	updates  int
	missing  int // (update, running node) pairs not delivered
	conv     bool
	convAt   time.Time
	lat      []float64
	latN     int
	latSum   float64
	latMax   float64
	traffic  uint64

	// Faults.
	side        []int // per node index: partition side
	partitioned bool
	cuts        []*linkCut

	bootInc   []uint64 // per node index: incarnation at its last boot
	falseDead map[string]bool
}

// keyTrack holds the updates of one key, in version order, and how many of
// them each node (by index) holds.
type keyTrack struct {
	ups []update
	ptr []int32
}

type update struct {
	ver    store.Version
	at     time.Time
	origin int
}

type linkCut struct {
	spec     LinkSpec
	from, to []bool // by node index
}

func idx(n *Node) int { return int(n.cfg.NodeID - 1) }

// runOnce runs the scenario once with the given seed.
func runOnce(s Scenario, seed uint64, progress func(Progress)) (*RunResult, error) {
	r, err := newRunner(s, seed, progress)
	if err != nil {
		return nil, err
	}
	return r.run()
}

// newRunner builds the cluster of a run (formed, with the real sampler),
// ready to run.
func newRunner(s Scenario, seed uint64, progress func(Progress)) (*runner, error) {
	m, err := s.mechanisms()
	if err != nil {
		return nil, err
	}
	opts := Options{Seed: seed}
	if !m.antiEntropy {
		opts.DigestCells = 1
	} else {
		// 1,024 cells decode differences of several hundred records, which
		// covers a simulated exchange; a larger difference falls back to a
		// full exchange. The store's default (16,384 cells, 650 KB) would
		// cost 650 MB per thousand virtual nodes.
		opts.DigestCells = 1024
	}
	if s.Model == "async" {
		opts.Latency = s.Latency.Mean
		opts.Delay = s.Latency.draw
	}
	c := New(opts)
	r := &runner{
		s: s, m: m, c: c, progress: progress,
		rng:       rand.New(rand.NewPCG(seed, 0x5ce7a210)),
		keys:      map[string]*keyTrack{},
		falseDead: map[string]bool{},
		res:       &RunResult{Seed: seed},
		unit:      float64(s.Cycle),
	}
	if s.Model == "async" {
		r.unit = float64(time.Second)
	}
	for i := range s.Nodes {
		if _, err := r.addNode(nodeName(i)); err != nil {
			return nil, err
		}
	}
	if s.Sampler == "real" {
		if err := r.formCluster(); err != nil {
			return nil, err
		}
	}
	// Faults start with the workload, on a formed cluster.
	c.opts.Loss, c.opts.Duplicate, c.opts.Bandwidth = s.Loss, s.Duplicate, s.Bandwidth
	return r, nil
}

func (r *runner) addNode(name string) (*Node, error) {
	var cfgErr error
	n, err := r.c.AddNode(name, func(cfg *engine.Config) {
		if err := r.s.configure(r.c, cfg); err != nil {
			cfgErr = err
		}
	})
	if cfgErr != nil {
		return nil, cfgErr
	}
	if err != nil {
		return nil, err
	}
	r.covered = append(r.covered, 0)
	r.side = append(r.side, 0)
	r.bootInc = append(r.bootInc, n.Engine.Self().Incarnation)
	for _, lc := range r.cuts {
		lc.from = append(lc.from, false)
		lc.to = append(lc.to, false)
	}
	r.missing += r.updates
	r.noteMissing()
	return n, nil
}

// since returns the time since the start of the workload, in the unit.
func (r *runner) since(t time.Time) float64 { return float64(t.Sub(r.start)) / r.unit }

// noteMissing records when the cluster holds every update.
func (r *runner) noteMissing() {
	switch {
	case r.missing > 0:
		r.conv = false
	case !r.conv:
		r.conv, r.convAt = true, r.c.now
	}
}

// formCluster joins every node through n0 at once and runs until every
// node sees every other alive, which RunResult.Formed reports: how fast
// the membership protocol (joins and the push-pulls after them) forms a
// cluster.
func (r *runner) formCluster() error {
	c := r.c
	seed := c.nodes[0]
	for _, nd := range c.nodes[1:] {
		nd.Join(seed.Name)
	}
	n := len(c.nodes)
	start := c.now
	limit := time.Duration(r.s.Duration)
	report := func() {
		if r.progress != nil {
			r.progress(Progress{Virtual: c.now.Sub(start), Limit: limit, Phase: "forming"})
		}
	}
	defer func() { r.res.Formed = c.now.Sub(start).Seconds() }()
	for {
		formed := true
		for _, nd := range c.nodes {
			if nd.Engine.NumLive() != n {
				formed = false
				break
			}
		}
		if formed {
			return nil
		}
		if c.now.Sub(start) > limit {
			return fmt.Errorf("sim: cluster of %d did not form within %v", n, limit)
		}
		if err := c.RunFor(100 * time.Millisecond); err != nil {
			return err
		}
		report()
	}
}

// run plays the workload, events and churn, and measures.
func (r *runner) run() (*RunResult, error) {
	c, s, res := r.c, r.s, r.res
	r.start = c.now
	c.OnChange = r.onChange
	c.OnSend = func(_ *Node, m engine.Message, _ int) {
		if m.Env.Updates() > 0 {
			r.traffic++
		}
	}
	if s.Sampler == "real" {
		c.OnMemberEvent = r.onMemberEvent
	}
	base := c.stats
	if err := r.script(); err != nil {
		return nil, err
	}
	limit := max(time.Duration(s.Duration), r.lastScrip.Sub(r.start)+time.Duration(s.Drain))
	end := r.start.Add(limit)
	cycle := time.Duration(s.Cycle)
	for step := 1; ; step++ {
		ts := r.start.Add(time.Duration(step) * cycle)
		if ts.After(end) {
			ts = end
		}
		for len(r.actions) > 0 && !r.actions[0].at.After(ts) {
			a := heap.Pop(&r.actions).(action)
			if err := c.RunFor(a.at.Sub(c.now)); err != nil {
				return nil, err
			}
			if err := a.do(); err != nil {
				return nil, fmt.Errorf("at %v: %w", a.at.Sub(r.start), err)
			}
		}
		if err := c.RunFor(ts.Sub(c.now)); err != nil {
			return nil, err
		}
		quiet := r.sample(base)
		if r.progress != nil {
			r.progress(Progress{Virtual: c.now.Sub(r.start), Limit: limit, Phase: "running"})
		}
		if !ts.Before(end) || (!c.now.Before(r.lastScrip) && len(r.actions) == 0 && quiet) {
			break
		}
	}
	r.finish(base)
	if r.progress != nil {
		r.progress(Progress{Virtual: c.now.Sub(r.start), Limit: limit, Phase: "done"})
	}
	c.OnChange, c.OnSend, c.OnMemberEvent, c.Blocked = nil, nil, nil, nil
	return res, nil
}

// sample records one step of the time series and reports whether the
// cluster is quiet: no hot rumor, no mail waiting for an ack or a retry.
func (r *runner) sample(base NetStats) bool {
	c := r.c
	sm := Sample{T: r.since(c.now), Live: len(c.live), Missing: r.missing,
		Messages: c.stats.Sent - base.Sent, Bytes: c.stats.Bytes - base.Bytes}
	quiet := true
	all := 0
	for _, nd := range c.live {
		st := nd.Engine.Stats()
		hot := st.Rumor.Hot > 0
		if hot {
			sm.Infective++
			quiet = false
		}
		if st.Mail.OutboxRecords > 0 || st.Mail.Acked+st.Mail.TimedOut < st.Mail.MailsSent {
			quiet = false
		}
		has := int(r.covered[idx(nd)]) == r.updates
		if has {
			all++
		}
		if !hot && !has {
			sm.Susceptible++
		}
	}
	sm.Removed = sm.Live - sm.Susceptible - sm.Infective
	if r.m.antiEntropy && all < len(c.live) {
		// Anti-entropy never loses interest: the run goes on until every
		// live node holds every update (Demers et al. §1.3).
		quiet = false
	}
	r.res.series = append(r.res.series, sm)
	r.res.Curve = append(r.res.Curve, all)
	r.res.Infective = append(r.res.Infective, sm.Infective)
	return quiet
}

func (r *runner) finish(base NetStats) {
	c, res := r.c, r.res
	res.Updates = r.updates
	res.Live = len(c.live)
	if pairs := r.updates * len(c.live); pairs > 0 {
		res.Residue = float64(r.missing) / float64(pairs)
	}
	res.Traffic = float64(r.traffic) / float64(r.s.Nodes)
	slices.Sort(r.lat)
	res.latencies = r.lat
	if r.latN > 0 {
		res.wanted = float64(len(r.lat)) * float64(r.latN+r.missing) / float64(r.latN)
	}
	if n := len(r.lat); n > 0 {
		res.TAvg = r.latSum / float64(r.latN)
		res.TLast, res.Max = r.latMax, r.latMax
		q := func(p float64) float64 { return r.lat[int(p*float64(n-1))] }
		res.P50, res.P90, res.P99 = q(0.5), q(0.9), q(0.99)
	}
	res.Converged = r.conv
	if r.conv {
		res.Convergence = r.since(r.convAt)
	}
	res.Messages = c.stats.Sent - base.Sent
	res.Bytes = c.stats.Bytes - base.Bytes
	res.Lost = c.stats.Lost - base.Lost
	res.Duplicated = c.stats.Duplicated - base.Duplicated
}

// onChange advances the node's delivery of the key's updates to the
// version it now holds.
func (r *runner) onChange(n *Node, rec store.Record) {
	if kt := r.keys[string(rec.Key)]; kt != nil {
		r.advance(n, kt, rec.Version)
	}
}

func (r *runner) advance(n *Node, kt *keyTrack, v store.Version) {
	i := idx(n)
	for len(kt.ptr) <= i {
		kt.ptr = append(kt.ptr, 0)
	}
	for p := int(kt.ptr[i]); p < len(kt.ups) && kt.ups[p].ver.Compare(v) <= 0; p++ {
		if u := &kt.ups[p]; u.origin != i {
			r.latency(r.since(r.c.now) - r.since(u.at))
		}
		kt.ptr[i]++
		r.covered[i]++
		if n.up {
			r.missing--
		}
	}
	r.noteMissing()
}

func (r *runner) latency(t float64) {
	r.latN++
	r.latSum += t
	r.latMax = max(r.latMax, t)
	if len(r.lat) < maxLatencySamples {
		r.lat = append(r.lat, t)
	} else if j := r.rng.IntN(r.latN); j < maxLatencySamples {
		r.lat[j] = t
	}
}

// write makes a client write (or delete) on n and starts tracking it.
func (r *runner) write(n *Node, key, value string, del bool) error {
	var rec store.Record
	var err error
	if del {
		rec, err = n.Delete(key)
	} else {
		rec, err = n.Put(key, value)
	}
	if errors.Is(err, engine.ErrClockOffset) {
		// The node knows its clock is off and refuses: the client is told.
		r.res.WritesRefused++
		return nil
	}
	if err != nil {
		return err
	}
	if b := n.cfg.MaxClockOffset; b > 0 && n.skew(r.c.now).Abs() > b+r.clockSlack() {
		// Invariant: a node whose clock is off by more than the bound
		// acknowledges no write (the slack covers what a round trip can
		// hide from its measurement).
		r.res.ClockViolations++
	}
	kt := r.keys[key]
	if kt == nil {
		kt = &keyTrack{}
		r.keys[key] = kt
		r.keyNames = append(r.keyNames, key)
	}
	// Versions of one key almost always grow with time; a write that loses
	// to one already tracked (same millisecond, smaller node id) goes in
	// its place, and nodes holding a newer version hold it too.
	pos := len(kt.ups)
	for pos > 0 && kt.ups[pos-1].ver.Compare(rec.Version) > 0 {
		pos--
	}
	kt.ups = slices.Insert(kt.ups, pos, update{ver: rec.Version, at: r.c.now, origin: idx(n)})
	r.updates++
	r.res.Updates = r.updates
	r.missing += len(r.c.live)
	for j, p := range kt.ptr {
		if int(p) > pos {
			kt.ptr[j]++
			r.covered[j]++
			if r.c.nodes[j].up {
				r.missing--
			}
		}
	}
	r.advance(n, kt, rec.Version)
	return nil
}

// clockSlack is how far beyond the bound a clock may be while its node
// still writes: the offset is measured over a round trip, within half of
// it, and judged at most clockRecheck late.
func (r *runner) clockSlack() time.Duration {
	return time.Duration(r.s.Latency.Mean)*4 + 200*time.Millisecond
}

// crash stops n; its store stays.
func (r *runner) crash(n *Node) {
	if !n.up {
		return
	}
	r.missing -= r.updates - int(r.covered[idx(n)])
	n.Crash()
	r.noteMissing()
}

// restart boots n on its store; with the real sampler it joins through a
// running node.
func (r *runner) restart(n *Node) error {
	if n.up {
		return nil
	}
	if err := n.Restart(); err != nil {
		return err
	}
	r.booted(n)
	return nil
}

func (r *runner) booted(n *Node) {
	i := idx(n)
	r.bootInc[i] = n.Engine.Self().Incarnation
	r.missing += r.updates - int(r.covered[i])
	r.noteMissing()
	if r.s.Sampler == "real" {
		for _, o := range r.c.nodes {
			if o != n && o.up {
				n.Join(o.Name)
				break
			}
		}
	}
}

// join adds a fresh node.
func (r *runner) join() error {
	n, err := r.addNode(nodeName(len(r.c.nodes)))
	if err != nil {
		return err
	}
	r.res.Joins++
	if r.s.Sampler == "real" {
		for _, o := range r.c.nodes {
			if o != n && o.up {
				n.Join(o.Name)
				break
			}
		}
	}
	return nil
}

// leave makes n announce its departure and stop leaveGrace later.
func (r *runner) leave(n *Node) error {
	if !n.up {
		return nil
	}
	if err := n.Leave(); err != nil {
		return err
	}
	r.res.Leaves++
	boots := n.boots
	r.at(r.c.now.Add(leaveGrace), func() error {
		if n.up && n.boots == boots {
			r.crash(n)
		}
		return nil
	})
	return nil
}

func (r *runner) onMemberEvent(_ *Node, ev membership.Event) {
	if ev.Member.State != wire.State_DEAD {
		return
	}
	t := r.c.byAddr[ev.Member.Name] // in the simulator a name is its address
	if t == nil || !t.up || ev.Member.Incarnation < r.bootInc[idx(t)] {
		return
	}
	k := fmt.Sprintf("%s@%d", ev.Member.Name, ev.Member.Incarnation)
	if !r.falseDead[k] {
		r.falseDead[k] = true
		r.res.FalseDetections++
	}
}

// blocked implements Cluster.Blocked for partitions and one-way cuts.
func (r *runner) blocked(from, to string) bool {
	a, b := r.c.byAddr[from], r.c.byAddr[to]
	if a == nil || b == nil {
		return false
	}
	i, j := idx(a), idx(b)
	if r.partitioned && r.side[i] != r.side[j] {
		return true
	}
	for _, lc := range r.cuts {
		if lc.from[i] && lc.to[j] {
			return true
		}
	}
	return false
}

func (r *runner) updateBlocked() {
	if r.partitioned || len(r.cuts) > 0 {
		r.c.Blocked = r.blocked
	} else {
		r.c.Blocked = nil
	}
}

// pick returns the nodes a set names that are in the wanted state (up or
// down), or a random choice among those.
func (r *runner) pick(set *NodeSet, up bool) ([]*Node, error) {
	var out []*Node
	if len(set.Names) > 0 {
		names, err := set.Names.expand()
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			n := r.c.byAddr[name]
			if n == nil {
				return nil, fmt.Errorf("sim: no node %s", name)
			}
			if n.up == up {
				out = append(out, n)
			}
		}
		return out, nil
	}
	var eligible []*Node
	for _, n := range r.c.nodes {
		if n.up == up {
			eligible = append(eligible, n)
		}
	}
	k := set.Count
	if set.Fraction > 0 {
		k = int(math.Round(set.Fraction * float64(len(eligible))))
	}
	k = min(k, len(eligible))
	for i := range k {
		j := i + r.rng.IntN(len(eligible)-i)
		eligible[i], eligible[j] = eligible[j], eligible[i]
	}
	return eligible[:k], nil
}

func (r *runner) nodeSet(l NodeList) ([]bool, error) {
	names, err := l.expand()
	if err != nil {
		return nil, err
	}
	set := make([]bool, len(r.c.nodes))
	for _, name := range names {
		n := r.c.byAddr[name]
		if n == nil {
			return nil, fmt.Errorf("sim: no node %s", name)
		}
		set[idx(n)] = true
	}
	return set, nil
}

// apply performs one scripted event.
func (r *runner) apply(e Event) error {
	switch {
	case e.Partition != nil:
		clear(r.side)
		if p := e.Partition; p.Fraction > 0 {
			ns, err := r.pick(&NodeSet{Fraction: p.Fraction}, true)
			if err != nil {
				return err
			}
			for _, n := range ns {
				r.side[idx(n)] = 1
			}
		} else {
			for g, l := range p.Groups {
				set, err := r.nodeSet(l)
				if err != nil {
					return err
				}
				for i, in := range set {
					if in {
						r.side[i] = g + 1
					}
				}
			}
		}
		r.partitioned = true
	case e.Heal:
		r.partitioned = false
		r.cuts = nil
	case e.Cut != nil:
		from, err := r.nodeSet(e.Cut.From)
		if err != nil {
			return err
		}
		to, err := r.nodeSet(e.Cut.To)
		if err != nil {
			return err
		}
		r.cuts = append(r.cuts, &linkCut{spec: *e.Cut, from: from, to: to})
	case e.Mend != nil:
		r.cuts = slices.DeleteFunc(r.cuts, func(lc *linkCut) bool {
			return slices.Equal(lc.spec.From, e.Mend.From) && slices.Equal(lc.spec.To, e.Mend.To)
		})
	case e.Loss != nil:
		r.c.opts.Loss = *e.Loss
	case e.Crash != nil:
		ns, err := r.pick(e.Crash, true)
		if err != nil {
			return err
		}
		for _, n := range ns {
			r.crash(n)
			r.res.Crashes++
		}
	case e.Restart != nil:
		ns, err := r.pick(e.Restart, false)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if err := r.restart(n); err != nil {
				return err
			}
			r.res.Restarts++
		}
	case e.Join > 0:
		for range e.Join {
			if err := r.join(); err != nil {
				return err
			}
		}
	case e.Leave != nil:
		ns, err := r.pick(e.Leave, true)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if err := r.leave(n); err != nil {
				return err
			}
		}
	case e.Clock != nil:
		ns, err := r.pick(&e.Clock.Nodes, true)
		if err != nil {
			return err
		}
		for _, n := range ns {
			// Keep the clock continuous at the change: drift counts from
			// now.
			n.ClockOffset = time.Duration(e.Clock.Offset) - time.Duration(e.Clock.Drift*float64(r.c.now.Sub(Epoch)))
			n.ClockDrift = e.Clock.Drift
		}
	case e.Write != nil || e.Delete != nil:
		w, del := e.Write, false
		if w == nil {
			w, del = e.Delete, true
		}
		n := r.randomLive()
		if w.Node != "" {
			n = r.c.byAddr[w.Node]
			if n == nil {
				return fmt.Errorf("sim: no node %s", w.Node)
			}
		}
		if n == nil || !n.up {
			return nil // a client of a down node gets an error; nothing to replicate
		}
		v := w.Value
		if v == "" && !del {
			v = r.value()
		}
		return r.write(n, w.Key, v, del)
	}
	r.updateBlocked()
	return nil
}

func (r *runner) randomLive() *Node {
	if len(r.c.live) == 0 {
		return nil
	}
	return r.c.live[r.rng.IntN(len(r.c.live))]
}

// value returns the next stream value: distinct, ValueSize bytes.
func (r *runner) value() string {
	v := fmt.Sprintf("v%d-", r.updates)
	if n := r.s.Workload.ValueSize - len(v); n > 0 {
		v += strings.Repeat("x", n)
	}
	return v
}

// script schedules the workload, the events and the churn.
func (r *runner) script() error {
	s, c := r.s, r.c
	r.lastScrip = r.start
	hasWrites := s.Workload.Rate > 0
	for _, e := range s.Events {
		hasWrites = hasWrites || e.Write != nil || e.Delete != nil
	}
	if !hasWrites {
		// The textbook workload: one update from a node drawn with the
		// network's generator, as the first versions of the simulator did.
		origin := c.nodes[c.rng.IntN(len(c.nodes))]
		if err := r.write(origin, "update", "value", false); err != nil {
			return err
		}
	}
	for _, e := range s.Events {
		r.at(r.start.Add(time.Duration(e.At)), func() error { return r.apply(e) })
	}
	end := r.start.Add(time.Duration(s.Duration))
	if w := s.Workload; w.Rate > 0 {
		stop := end
		if w.Stop > 0 {
			stop = r.start.Add(time.Duration(w.Stop))
		}
		r.poisson(r.start.Add(time.Duration(w.Start)), stop, w.Rate, func() error {
			n := r.randomLive()
			if n == nil {
				return nil
			}
			if w.Deletes > 0 && len(r.keyNames) > 0 && r.rng.Float64() < w.Deletes {
				return r.write(n, r.keyNames[r.rng.IntN(len(r.keyNames))], "", true)
			}
			return r.write(n, fmt.Sprintf("k%d", r.rng.IntN(w.Keys)), r.value(), false)
		})
	}
	ch := s.Churn
	r.poisson(r.start, end, ch.Crash, func() error {
		if len(c.live) < 2 {
			return nil
		}
		n := r.randomLive()
		r.crash(n)
		r.res.Crashes++
		if ch.RestartAfter > 0 {
			boots := n.boots
			r.at(c.now.Add(time.Duration(ch.RestartAfter)), func() error {
				if n.up || n.boots != boots {
					return nil
				}
				r.res.Restarts++
				return r.restart(n)
			})
		}
		return nil
	})
	r.poisson(r.start, end, ch.Join, r.join)
	r.poisson(r.start, end, ch.Leave, func() error {
		if len(c.live) < 2 {
			return nil
		}
		return r.leave(r.randomLive())
	})
	return nil
}

// poisson schedules do at the arrivals of a Poisson process of the given
// rate per second, from start until stop.
func (r *runner) poisson(start, stop time.Time, rate float64, do func() error) {
	if rate <= 0 {
		return
	}
	r.lastScrip = later(r.lastScrip, stop)
	var next func(from time.Time)
	next = func(from time.Time) {
		t := from.Add(time.Duration(r.rng.ExpFloat64() / rate * float64(time.Second)))
		if !t.Before(stop) {
			return
		}
		r.actions.push(&r.aseq, action{at: t, do: func() error {
			next(t)
			return do()
		}})
	}
	next(start)
}

// at schedules do at t.
func (r *runner) at(t time.Time, do func() error) {
	r.lastScrip = later(r.lastScrip, t)
	r.actions.push(&r.aseq, action{at: t, do: do})
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

type action struct {
	at  time.Time
	seq uint64
	do  func() error
}

type actionQueue []action

func (q *actionQueue) push(seq *uint64, a action) {
	*seq++
	a.seq = *seq
	heap.Push(q, a)
}

func (q actionQueue) Len() int { return len(q) }
func (q actionQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q actionQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *actionQueue) Push(x any)   { *q = append(*q, x.(action)) }
func (q *actionQueue) Pop() any {
	old := *q
	a := old[len(old)-1]
	*q = old[:len(old)-1]
	return a
}
