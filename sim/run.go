package sim

import (
	"bytes"
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

	// The Jepsen-style record of the run: client operations with their
	// outcomes, and what the nemesis did, for the checker and the trace.
	hist      []Op
	nemesis   []string
	lastFault time.Time // the last fault or heal of the nemesis
	settled   bool      // the replicas became identical after the last fault
	settledAt time.Time // since when they are
	// stopSettled ends the run as soon as the replicas are identical and
	// the membership agrees after the last scripted action (exploration).
	stopSettled bool

	// Adversaries (see byzantine.go). Every measure and invariant is over
	// the honest nodes: the byzantine nodes' own replicas and views are
	// out of scope.
	byz []bool       // per node index: byzantine
	adv []*byzantine // the byzantine nodes' adversaries
	// inventedSeen is the last step at which an honest node held a member
	// an adversary invented.
	inventedSeen time.Time
	attack       bool               // the adversaries act (from the start of the workload)
	forged       map[forgedKey]bool // versions the adversaries made up
	// forgedValues are values forgers put on versions (relayed records
	// altered, or writes invented in another node's name).
	forgedValues map[forgedKey]string
	qPairs       map[[2]int]bool      // (honest observer, target) quarantine decisions
	qBy          map[int]map[int]bool // byzantine target -> honest nodes quarantining it now
	qAllAt       map[int]time.Time    // byzantine target -> when every honest node first had it quarantined
	byzKind      map[int]string       // node index -> behaviour
}

// counted reports whether n counts in the measures: running and honest.
func (r *runner) counted(n *Node) bool { return n.up && !r.byz[idx(n)] }

// honestLive returns the running honest nodes.
func (r *runner) honestLive() []*Node {
	if len(r.adv) == 0 {
		return r.c.live
	}
	out := make([]*Node, 0, len(r.c.live))
	for _, n := range r.c.live {
		if !r.byz[idx(n)] {
			out = append(out, n)
		}
	}
	return out
}

// randomHonest returns a running honest node at random, nil if none.
func (r *runner) randomHonest() *Node {
	h := r.honestLive()
	if len(h) == 0 {
		return nil
	}
	return h[r.rng.IntN(len(h))]
}

// maxExactNodes bounds the clusters whose replicas the runner compares
// record by record at every step.
const maxExactNodes = 64

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

func idx(n *Node) int { return n.index }

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
	opts := Options{Seed: seed, Signed: s.Signed}
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
		rng:          rand.New(rand.NewPCG(seed, 0x5ce7a210)),
		keys:         map[string]*keyTrack{},
		falseDead:    map[string]bool{},
		res:          &RunResult{Seed: seed},
		unit:         float64(s.Cycle),
		forged:       map[forgedKey]bool{},
		forgedValues: map[forgedKey]string{},
		qPairs:       map[[2]int]bool{},
		qBy:          map[int]map[int]bool{},
		qAllAt:       map[int]time.Time{},
	}
	r.byz = r.pickByzantine()
	c.OnQuarantine = r.onQuarantine // from the start: joins must not look like floods
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
	n.SyncDelay = time.Duration(r.s.SyncDelay)
	r.covered = append(r.covered, 0)
	r.side = append(r.side, 0)
	r.bootInc = append(r.bootInc, n.Engine.Self().Incarnation)
	for _, lc := range r.cuts {
		lc.from = append(lc.from, false)
		lc.to = append(lc.to, false)
	}
	i := idx(n)
	if i >= len(r.byz) {
		r.byz = append(r.byz, false) // nodes that join later are honest
	}
	if r.byz[i] {
		adv := &byzantine{r: r, n: n, behaviour: r.behaviour(i), rng: rand.New(rand.NewPCG(r.res.Seed, uint64(i)))}
		n.Mangle = adv.mangle
		r.adv = append(r.adv, adv)
	} else {
		r.missing += r.updates
	}
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
	c.OnRollback = func(_ *Node, keys []string) { r.retrack(keys) }
	c.OnFailStop = func(n *Node, err error) {
		r.res.FailStops++
		r.note("%s fail-stop: %v", n.Name, err)
	}
	r.lastFault = r.start
	r.attack = true
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
		r.sampleInvented()
		if r.progress != nil {
			r.progress(Progress{Virtual: c.now.Sub(r.start), Limit: limit, Phase: "running"})
		}
		if r.m.antiEntropy && len(c.nodes) <= maxExactNodes && !c.now.Before(r.lastScrip) && len(r.actions) == 0 {
			// Note when the replicas became identical after the last fault
			// and write, exactly (a small cluster: the comparison is cheap).
			if !r.identical() {
				r.settledAt = time.Time{}
			} else if r.settledAt.IsZero() {
				r.settledAt = c.now
			}
			if r.stopSettled && !r.settledAt.IsZero() && r.membersAgree() {
				break
			}
		}
		if !ts.Before(end) || (!c.now.Before(r.lastScrip) && len(r.actions) == 0 && quiet) {
			break
		}
	}
	opts := r.expect()
	if opts.Converged {
		// Convergence after the last fault healed: the replicas must become
		// identical within the settling bound, counted from then.
		quiet := later(r.lastFault, r.lastScrip)
		bound := quiet.Add(time.Duration(s.Drain))
		if r.settledAt.IsZero() || !r.identical() {
			for !r.identical() && c.now.Before(bound) {
				if err := c.RunFor(min(time.Second, bound.Sub(c.now))); err != nil {
					return nil, err
				}
			}
			r.settledAt = time.Time{}
			if r.identical() {
				r.settledAt = c.now
			}
		}
		if !r.settledAt.IsZero() {
			res.Settled = max(0, r.settledAt.Sub(quiet).Seconds())
			r.settled = true
		}
	}
	if opts.Members {
		// Membership agreement after quiet: give the failure detector the
		// settling bound to see crashes and restarts.
		settle := c.now
		agreed, err := c.RunUntil(time.Duration(s.Drain), r.membersAgree)
		if err != nil {
			return nil, err
		}
		if agreed {
			res.MembersAgreed = c.now.Sub(settle).Seconds()
		}
	}
	r.finish(base)
	if r.progress != nil {
		r.progress(Progress{Virtual: c.now.Sub(r.start), Limit: limit, Phase: "done"})
	}
	c.OnChange, c.OnSend, c.OnMemberEvent, c.Blocked = nil, nil, nil, nil
	c.OnRollback, c.OnFailStop, c.OnQuarantine = nil, nil, nil
	r.attack = false
	r.finishByzantine()
	if err := r.check(opts); err != nil {
		return res, err
	}
	return res, nil
}

// sample records one step of the time series and reports whether the
// cluster is quiet: no hot rumor, no mail waiting for an ack or a retry,
// nothing waiting in the broadcast tree's windows or grafts.
func (r *runner) sample(base NetStats) bool {
	c := r.c
	live := r.honestLive()
	sm := Sample{T: r.since(c.now), Live: len(live), Missing: r.missing,
		Messages: c.stats.Sent - base.Sent, Bytes: c.stats.Bytes - base.Bytes}
	quiet := true
	all := 0
	for _, nd := range live {
		st := nd.Engine.Stats()
		hot := st.Rumor.Hot > 0
		if hot {
			sm.Infective++
			quiet = false
		}
		if st.Mail.OutboxRecords > 0 || st.Mail.Acked+st.Mail.TimedOut < st.Mail.MailsSent {
			quiet = false
		}
		if st.Tree.Queued > 0 || st.Tree.Missing > 0 {
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
	if r.m.antiEntropy && all < len(live) {
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
	res.Live = len(r.honestLive())
	if pairs := r.updates * res.Live; pairs > 0 {
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
	if v, ok := r.forgedValues[forgedKey{string(rec.Key), rec.Version}]; ok && !r.byz[idx(n)] && !rec.Tombstone && string(rec.Value) == v {
		r.res.ForgedAccepted++
		r.note("%s accepted a forged record: key %q version %v", n.Name, rec.Key, rec.Version)
	}
	if len(r.forged) > 0 && !r.byz[idx(n)] && r.forged[forgedKey{string(rec.Key), rec.Version}] {
		r.res.ForgedAccepted++
		r.note("%s accepted a forged record: key %q version %v", n.Name, rec.Key, rec.Version)
	}
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
		if r.counted(n) {
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

// write makes a client write (or delete) on n, records it in the history
// and starts tracking it.
func (r *runner) write(n *Node, key, value string, del bool) error {
	op := Op{Index: len(r.hist), Node: n.Name, Key: key, Value: value, Delete: del, Invoked: Duration(r.c.now.Sub(r.start))}
	if del {
		op.Value = ""
	}
	i := op.Index
	// The answer may come before Write returns (a sync without delay): it
	// is kept until the op is in the history.
	var early []error
	inCall := true
	lost := false
	acked := func(err error) {
		if inCall {
			early = append(early, err)
			return
		}
		o := &r.hist[i]
		o.Completed = Duration(r.c.now.Sub(r.start))
		if err != nil {
			o.Outcome, o.Err = Info, err.Error()
			lost = true
			return
		}
		o.Outcome = OK
		r.res.Acknowledged++
	}
	rec, err := n.Write(key, op.Value, del, acked)
	inCall = false
	if errors.Is(err, engine.ErrClockOffset) || errors.Is(err, store.ErrNoSpace) || errors.Is(err, ErrDiskIO) {
		// The node knows it cannot honour the write and refuses: the
		// client is told, and nothing happened.
		if errors.Is(err, engine.ErrClockOffset) {
			r.res.WritesRefused++
		} else {
			r.res.StorageRefused++
		}
		op.Outcome, op.Err, op.Completed = Fail, err.Error(), op.Invoked
		r.hist = append(r.hist, op)
		return nil
	}
	if err != nil {
		return err
	}
	op.Version = rec.Version
	r.hist = append(r.hist, op)
	for _, err := range early {
		acked(err)
	}
	if b := n.cfg.MaxClockOffset; b > 0 && n.skew(r.c.now).Abs() > b+r.clockSlack() {
		// Invariant: a node whose clock is off by more than the bound
		// acknowledges no write (the slack covers what a round trip can
		// hide from its measurement).
		r.res.ClockViolations++
		r.note("clock invariant: %s, off by %v, acknowledged op #%d", n.Name, n.skew(r.c.now), op.Index)
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
	r.missing += len(r.honestLive())
	for j, p := range kt.ptr {
		if int(p) > pos {
			kt.ptr[j]++
			r.covered[j]++
			if r.counted(r.c.nodes[j]) {
				r.missing--
			}
		}
	}
	r.advance(n, kt, rec.Version)
	if lost {
		// The node stopped before the write was durable: it is gone.
		r.retrack([]string{key})
	}
	return nil
}

// retrack recounts deliveries after crashes took back changes that were
// not durable: updates no node holds any more (unacknowledged writes lost
// with their node) are forgotten, and each node's progress on the keys is
// read again from its store.
func (r *runner) retrack(keys []string) {
	for _, key := range keys {
		kt := r.keys[key]
		if kt == nil {
			continue
		}
		held := make([]store.Version, len(r.c.nodes))
		var top store.Version
		for i, n := range r.c.nodes {
			if rec, ok := n.Get(key); ok {
				held[i] = rec.Version
				if rec.Version.Compare(top) > 0 {
					top = rec.Version
				}
			}
		}
		ups := kt.ups[:0]
		for _, u := range kt.ups {
			if u.ver.Compare(top) <= 0 {
				ups = append(ups, u)
			}
		}
		kt.ups = ups
		kt.ptr = make([]int32, len(r.c.nodes))
		for i := range r.c.nodes {
			for p := range kt.ups {
				if kt.ups[p].ver.Compare(held[i]) <= 0 {
					kt.ptr[i] = int32(p + 1)
				}
			}
		}
	}
	r.updates = 0
	for _, kt := range r.keys {
		r.updates += len(kt.ups)
	}
	clear(r.covered)
	for _, kt := range r.keys {
		for i, p := range kt.ptr {
			r.covered[i] += p
		}
	}
	r.missing = 0
	for i, n := range r.c.nodes {
		if r.counted(n) {
			r.missing += r.updates - int(r.covered[i])
		}
	}
	r.noteMissing()
}

// clockFaults reports whether the scenario makes clocks wrong.
func (r *runner) clockFaults() bool {
	for _, e := range r.s.Events {
		if e.Clock != nil {
			return true
		}
	}
	return false
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
	if !r.byz[idx(n)] {
		r.missing -= r.updates - int(r.covered[idx(n)])
	}
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
	if !n.up {
		return nil // its disk still fails: it stopped again at once
	}
	r.booted(n)
	return nil
}

func (r *runner) booted(n *Node) {
	i := idx(n)
	r.bootInc[i] = n.Engine.Self().Incarnation
	if !r.byz[i] {
		r.missing += r.updates - int(r.covered[i])
	}
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

func (r *runner) onMemberEvent(n *Node, ev membership.Event) {
	if ev.Member.State != wire.State_DEAD || r.byz[idx(n)] {
		return
	}
	t := r.c.byName[ev.Member.Name]
	if t == nil || !t.up || ev.Member.Incarnation < r.bootInc[idx(t)] || r.byz[idx(t)] {
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
			n := r.c.byName[name]
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
		n := r.c.byName[name]
		if n == nil {
			return nil, fmt.Errorf("sim: no node %s", name)
		}
		set[idx(n)] = true
	}
	return set, nil
}

// apply performs one scripted event.
func (r *runner) apply(e Event) error {
	if e.Write == nil && e.Delete == nil {
		r.lastFault = r.c.now
		r.note("%s", e.describe())
	}
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
			r.note("  crashed %s", n.Name)
			r.crash(n)
			r.res.Crashes++
		}
	case e.Restart != nil:
		ns, err := r.pick(e.Restart, false)
		if err != nil {
			return err
		}
		for _, n := range ns {
			r.note("  restarted %s", n.Name)
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
			r.note("  left %s", n.Name)
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
	case e.Storage != nil:
		ns, err := r.pickAny(&e.Storage.Nodes)
		if err != nil {
			return err
		}
		for _, n := range ns {
			st := e.Storage
			n.disk.full, n.disk.applyErr, n.disk.syncErr = st.Full, st.ApplyError, st.SyncError
			if st.SyncDelay != nil {
				n.SyncDelay = time.Duration(*st.SyncDelay)
			}
		}
	case e.Write != nil || e.Delete != nil:
		w, del := e.Write, false
		if w == nil {
			w, del = e.Delete, true
		}
		n := r.randomLive()
		if w.Node != "" {
			n = r.c.byName[w.Node]
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

// pickAny is pick for faults that also reach nodes that are down: every
// named node, or every node for a fraction of 1, else running nodes drawn
// at random.
func (r *runner) pickAny(set *NodeSet) ([]*Node, error) {
	if len(set.Names) == 0 && set.Fraction < 1 {
		return r.pick(set, true)
	}
	up, err := r.pick(set, true)
	if err != nil {
		return nil, err
	}
	down, err := r.pick(set, false)
	if err != nil {
		return nil, err
	}
	return append(up, down...), nil
}

// note adds a line to the nemesis log.
func (r *runner) note(format string, args ...any) {
	r.nemesis = append(r.nemesis, fmt.Sprintf("%v ", Duration(r.c.now.Sub(r.start)))+fmt.Sprintf(format, args...))
}

func (r *runner) randomLive() *Node {
	if len(r.c.live) == 0 {
		return nil
	}
	return r.c.live[r.rng.IntN(len(r.c.live))]
}

// value returns the next stream value: distinct, ValueSize bytes.
func (r *runner) value() string {
	v := fmt.Sprintf("v%d-", len(r.hist))
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
		if len(r.adv) > 0 {
			h := r.honestLive()
			origin = h[c.rng.IntN(len(h))]
		}
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
			n := r.randomHonest()
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
		r.note("churn: crash %s", n.Name)
		r.lastFault = c.now
		r.crash(n)
		r.res.Crashes++
		if ch.RestartAfter > 0 {
			boots := n.boots
			r.at(c.now.Add(time.Duration(ch.RestartAfter)), func() error {
				if n.up || n.boots != boots {
					return nil
				}
				r.res.Restarts++
				r.note("churn: restart %s", n.Name)
				r.lastFault = c.now
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

// expect says which invariants the end of the run must meet besides those
// that always hold: convergence once every fault has healed (with
// anti-entropy, the mechanism that guarantees it), membership agreement
// with the real sampler.
func (r *runner) expect() CheckOptions {
	if !r.m.antiEntropy || r.partitioned || len(r.cuts) > 0 || len(r.c.live) == 0 {
		return CheckOptions{}
	}
	for _, n := range r.c.live {
		if n.disk.full || n.disk.applyErr || n.disk.syncErr {
			return CheckOptions{}
		}
		if b := n.cfg.MaxClockOffset; b > 0 && n.skew(r.c.now).Abs() > b/2 {
			return CheckOptions{}
		}
	}
	return CheckOptions{Converged: true, Members: r.s.Sampler == "real"}
}

// membersAgree reports whether every running node sees exactly the
// running nodes alive.
func (r *runner) membersAgree() bool {
	for _, n := range r.honestLive() {
		alive := 0
		for _, m := range n.Engine.Members() {
			if m.State != wire.State_ALIVE {
				continue
			}
			o := r.c.byName[m.Name]
			if o == nil && len(r.adv) > 0 {
				continue // invented by an adversary (see RunResult.InventedAlive)
			}
			if o == nil || !o.up {
				return false
			}
			if !r.byz[idx(o)] {
				alive++
			}
		}
		if alive != len(r.honestLive()) {
			return false
		}
	}
	return true
}

// replicas returns the running nodes' final states, in node order.
func (r *runner) replicas() []Replica {
	var out []Replica
	for _, n := range r.c.nodes {
		if !r.counted(n) {
			continue
		}
		rp := Replica{Node: n.Name, Records: map[string]store.Record{}}
		_ = n.Store.Scan(nil, nil, func(rec store.Record) bool {
			rp.Records[string(rec.Key)] = rec
			return true
		})
		for _, m := range n.Engine.Members() {
			if o := r.c.byName[m.Name]; (o != nil && r.byz[idx(o)]) || (o == nil && len(r.adv) > 0) {
				continue // the faulty nodes' liveness, and members they invented, are out of scope
			}
			if m.State == wire.State_ALIVE {
				rp.Alive = append(rp.Alive, m.Name)
			}
		}
		out = append(out, rp)
	}
	return out
}

// check runs the checker on the history and the final replicas; a broken
// invariant ends the run with a *ViolationError.
func (r *runner) check(opts CheckOptions) error {
	res := r.res
	res.SettleBound = time.Duration(r.s.Drain).Seconds()
	for _, o := range r.hist {
		if o.Outcome == Info {
			res.Unacknowledged++
		}
	}
	reps := r.replicas()
	vs := Check(r.hist, reps, opts)
	if opts.Converged && !r.settled {
		vs = append(vs, Violation{Invariant: InvConvergence, Detail: fmt.Sprintf("replicas not identical %v after the last fault or write (the bound)", time.Duration(r.s.Drain))})
	}
	if res.Quarantined.False > 0 && len(r.adv) == 0 && !r.clockFaults() {
		// Without adversaries, and without clocks made wrong (a node whose
		// clock jumps ahead sends future records, and may rightly be
		// quarantined), every quarantine is of an honest node.
		vs = append(vs, Violation{Invariant: InvQuarantine, Detail: fmt.Sprintf("%d (honest, honest) quarantine decisions", res.Quarantined.False)})
	}
	if len(r.adv) == 0 {
		// Without adversaries no request is beyond a rate limit: the
		// limits are set above what the protocol's timers allow (see
		// engine.RateLimits), clock faults and loss included.
		for _, n := range r.c.live {
			st := n.Engine.Stats().Trust
			for _, k := range engine.LimitKinds {
				if c := st.RateLimited[k]; c > 0 {
					vs = append(vs, Violation{Invariant: InvQuarantine, Node: n.Name, Detail: fmt.Sprintf("%d %s requests of honest peers refused for their rate", c, k)})
				}
			}
		}
	}
	if res.ClockViolations > 0 {
		vs = append(vs, Violation{Invariant: InvClock, Detail: fmt.Sprintf("%d writes acknowledged by a node whose clock was off beyond the bound", res.ClockViolations)})
	}
	if len(vs) == 0 {
		return nil
	}
	return &ViolationError{Seed: res.Seed, At: Duration(r.c.now.Sub(r.start)), Violations: vs, Trace: r.trace(vs, reps)}
}

// trace is the minimal story of a violation: what the nemesis did, the
// operations on the keys concerned, and what each replica holds of them.
func (r *runner) trace(vs []Violation, reps []Replica) []string {
	keys := map[string]bool{}
	var order []string
	for _, v := range vs {
		if v.Key != "" && !keys[v.Key] && len(order) < 3 {
			keys[v.Key] = true
			order = append(order, v.Key)
		}
	}
	var out []string
	for _, l := range r.nemesis {
		out = append(out, "nemesis "+l)
	}
	for _, k := range order {
		for _, o := range r.hist {
			if o.Key == k {
				out = append(out, "op "+o.String())
			}
		}
		for _, rp := range reps {
			rec, ok := rp.Records[k]
			out = append(out, fmt.Sprintf("final %s %s: %s", rp.Node, k, describe(rec, ok)))
		}
	}
	return out
}

// ViolationError is a run that broke an invariant: its seed, the virtual
// time it ended, what broke, and a minimal trace to start debugging from.
type ViolationError struct {
	Seed       uint64      `json:"seed" yaml:"seed"`
	At         Duration    `json:"at" yaml:"at"`
	Violations []Violation `json:"violations" yaml:"violations"`
	Trace      []string    `json:"trace" yaml:"trace"`
}

func (e *ViolationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invariant violated: seed %d, virtual time %v:", e.Seed, e.At)
	for i, v := range e.Violations {
		if i == 10 {
			fmt.Fprintf(&b, "\n  ... %d more", len(e.Violations)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s", v)
	}
	b.WriteString("\ntrace:")
	for _, l := range e.Trace {
		fmt.Fprintf(&b, "\n  %s", l)
	}
	return b.String()
}

// identical reports whether every running replica holds the same records.
func (r *runner) identical() bool {
	var ref []store.Record
	first := true
	for _, n := range r.honestLive() {
		var recs []store.Record
		_ = n.Store.Scan(nil, nil, func(rec store.Record) bool {
			recs = append(recs, rec)
			return true
		})
		if first {
			ref, first = recs, false
			continue
		}
		if !slices.EqualFunc(recs, ref, func(a, b store.Record) bool {
			return bytes.Equal(a.Key, b.Key) && sameRecord(a, b)
		}) {
			return false
		}
	}
	return true
}
