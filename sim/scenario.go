package sim

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/antientropy"
	"github.com/hearsaydb/hearsay/engine/rumor"
)

// Scenario describes one simulation: the cluster, the protocol
// configuration, the network, the faults and the workload.
type Scenario struct {
	// Nodes is the cluster size at the start.
	Nodes int `json:"nodes" yaml:"nodes"`
	// Model is "cycles" (Demers et al.'s synchronous model: every node acts
	// once per cycle, messages arrive within the cycle, a node infected in
	// a cycle spreads from the next) or "async" (jittered timers, latency
	// drawn per message).
	Model string `json:"model" yaml:"model"`
	// Mechanism is the replication mechanisms, joined by "+": "rumor",
	// "direct-mail", "plumtree", "anti-entropy", e.g. "direct-mail+rumor"
	// or "plumtree+anti-entropy".
	Mechanism string `json:"mechanism" yaml:"mechanism"`
	// Direction is push, pull or push-pull.
	Direction string `json:"direction" yaml:"direction"`
	// Interest is the loss-of-interest rule: feedback-counter,
	// feedback-coin, blind-counter or blind-coin.
	Interest string `json:"interest" yaml:"interest"`
	// K is the loss-of-interest parameter.
	K int `json:"k" yaml:"k"`
	// Fanout is how many partners a node contacts per round.
	Fanout int `json:"fanout" yaml:"fanout"`
	// Loss is the probability that a message is lost.
	Loss float64 `json:"loss" yaml:"loss"`
	// Duplicate is the probability that a message is delivered twice.
	Duplicate float64 `json:"duplicate,omitempty" yaml:"duplicate"`
	// Bandwidth is each directed link's capacity in bytes per second; a
	// message waits for the messages before it on its link and for its own
	// serialization. 0: unlimited.
	Bandwidth int64 `json:"bandwidth,omitempty" yaml:"bandwidth"`
	// Latency is the one-way message delay in the async model.
	Latency Latency `json:"latency" yaml:"latency"`
	// Sampler is "oracle" (uniform over the true live set) or "real" (the
	// membership component; the cluster forms by joining first).
	Sampler string `json:"sampler" yaml:"sampler"`
	// Suspicion is the membership component's shortest suspicion timeout
	// (real sampler). 0: the engine's default.
	Suspicion Duration `json:"suspicion,omitempty" yaml:"suspicion"`
	// Seed seeds the first run; run i uses Seed+i.
	Seed uint64 `json:"seed" yaml:"seed"`
	// Runs is how many runs to average.
	Runs int `json:"runs" yaml:"runs"`
	// Duration bounds each run in virtual time. Streams of writes and churn
	// at a rate go on until it; a run with nothing scripted after it ends
	// earlier, as soon as the cluster is quiet (no hot rumor, no mail
	// waiting).
	Duration Duration `json:"duration" yaml:"duration"`
	// Drain is how long a run may go on after its last scripted write,
	// event or churn, for the updates in flight to settle, when that is
	// later than Duration. Default 1m.
	Drain Duration `json:"drain,omitempty" yaml:"drain"`
	// Cycle is the length of a cycle (cycles model) or gossip interval, and
	// the step of the time series.
	Cycle Duration `json:"cycle" yaml:"cycle"`
	// SyncDelay is how long each node's store takes to sync (fsync):
	// messages that carry records wait for it and writes are acknowledged
	// after it, and a crash loses the changes no completed sync covered.
	// 0: syncs are instant and crashes lose nothing.
	SyncDelay Duration `json:"sync_delay,omitempty" yaml:"sync_delay,omitempty"`
	// Signed makes a certificate cluster: every node gets a certificate
	// from an in-memory CA derived from the run's seed, and every record is
	// signed by its origin and verified by its receivers (Options.Signed).
	Signed bool `json:"signed,omitempty" yaml:"signed,omitempty"`
	// MailWindow batches direct mail (engine.Config.DirectMailWindow):
	// the writes of a window leave in one mail per peer. 0: at once.
	MailWindow Duration `json:"mail_window,omitempty" yaml:"mail_window,omitempty"`
	// The broadcast tree (mechanism plumtree, engine.Config.Tree): its
	// initial eager fanout (0: the engine's default), how many lazy peers
	// each announcement window goes to (0: all of them), the eager and
	// announcement windows and the graft timeout (0: the engine's
	// defaults).
	TreeFanout   int      `json:"tree_fanout,omitempty" yaml:"tree_fanout,omitempty"`
	LazyFanout   int      `json:"lazy_fanout,omitempty" yaml:"lazy_fanout,omitempty"`
	EagerWindow  Duration `json:"eager_window,omitempty" yaml:"eager_window,omitempty"`
	IHaveWindow  Duration `json:"ihave_window,omitempty" yaml:"ihave_window,omitempty"`
	GraftTimeout Duration `json:"graft_timeout,omitempty" yaml:"graft_timeout,omitempty"`
	// PruneAfter is plumtree.Config.PruneAfter (0: the engine's default).
	PruneAfter int `json:"prune_after,omitempty" yaml:"prune_after,omitempty"`

	// Workload is what clients write; the default is one update.
	Workload Workload `json:"workload,omitzero" yaml:"workload"`
	// Churn is crashes, restarts, joins and leaves at a rate.
	Churn Churn `json:"churn,omitzero" yaml:"churn"`
	// Events happen at given times.
	Events []Event `json:"events,omitempty" yaml:"events"`

	// Byzantine makes fractions of the nodes faulty with a behaviour (see
	// Behaviours): they run the real engine, and the simulator rewrites
	// what they send. Measures and invariants are over the honest nodes.
	Byzantine []ByzantineSpec `json:"byzantine,omitempty" yaml:"byzantine,omitempty"`
	// NoDefences turns peer scoring's defences off on every node
	// (engine.Config.Trust.Disabled): nobody is quarantined, death claims
	// are believed. For comparison runs.
	NoDefences bool `json:"no_defences,omitempty" yaml:"no_defences,omitempty"`
}

// DefaultScenario is Demers et al.'s textbook setting: 1,000 nodes, push
// rumor mongering with feedback and a counter, k=2, one partner per cycle.
func DefaultScenario() Scenario {
	return Scenario{
		Nodes: 1000, Model: "cycles", Mechanism: "rumor", Direction: "push", Interest: "feedback-counter",
		K: 2, Fanout: 1, Sampler: "oracle", Seed: 1, Runs: 1, Duration: Duration(10 * time.Minute), Cycle: Duration(time.Second),
		Latency: Latency{Dist: "constant", Mean: 10 * time.Millisecond},
	}
}

// RunResult is what one run measured. Times are in the report's unit:
// cycles for the cycles model, seconds for async, counted from the start of
// the workload.
type RunResult struct {
	Seed uint64 `json:"seed" yaml:"seed"`
	// Updates is the number of client writes and deletes.
	Updates int `json:"updates" yaml:"updates"`
	// Residue is the fraction of (update, node) pairs, over the nodes
	// running at the end, in which the node holds neither the update nor a
	// newer version of its key. For the single update: the fraction of
	// nodes never reached.
	Residue float64 `json:"residue" yaml:"residue"`
	// Traffic is update-carrying messages sent, divided by the node count.
	Traffic float64 `json:"traffic" yaml:"traffic"`
	// TAvg is the mean delivery latency: from an update's write until a
	// node first holds it (or a newer version), the writer excluded.
	TAvg float64 `json:"t_avg" yaml:"t_avg"`
	// TLast is the largest delivery latency: for the single update, when
	// the last node that ever got it did.
	TLast float64 `json:"t_last" yaml:"t_last"`
	// Messages and Bytes count everything sent, of every kind.
	Messages uint64 `json:"messages" yaml:"messages"`
	Bytes    uint64 `json:"bytes" yaml:"bytes"`
	// Delivery latency percentiles, in the same unit as TAvg; Max equals
	// TLast.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	// Converged tells whether, at the end, every running node held every
	// update; Convergence is when that last became and stayed true.
	Converged   bool    `json:"converged"`
	Convergence float64 `json:"convergence"`
	// WritesRefused counts client writes a node refused because it knew
	// its clock was too far off (engine.ErrClockOffset).
	WritesRefused int `json:"writes_refused,omitempty" yaml:"writes_refused,omitempty"`
	// ClockViolations counts writes acknowledged by a node whose clock was
	// off by more than the engine's MaxClockOffset (plus what a
	// measurement over a round trip can miss): an invariant, always 0.
	ClockViolations int `json:"clock_violations" yaml:"clock_violations"`
	// Acknowledged counts client writes acknowledged (durable on their
	// node); Unacknowledged those whose node crashed before they were
	// durable (the client never learned: they may be lost).
	Acknowledged   int `json:"acknowledged" yaml:"acknowledged"`
	Unacknowledged int `json:"unacknowledged,omitempty" yaml:"unacknowledged,omitempty"`
	// StorageRefused counts client writes refused by a failing store (out
	// of space, I/O error); FailStops nodes stopped by a failed sync.
	StorageRefused int `json:"storage_refused,omitempty" yaml:"storage_refused,omitempty"`
	FailStops      int `json:"fail_stops,omitempty" yaml:"fail_stops,omitempty"`
	// Settled is how long, in seconds of virtual time, after the last
	// fault (or its heal) and the last write, all running replicas took to
	// become identical; SettleBound is the most the invariant allows (the
	// scenario's Drain). Checked with anti-entropy, once every fault has
	// healed.
	Settled     float64 `json:"settled" yaml:"settled"`
	SettleBound float64 `json:"settle_bound" yaml:"settle_bound"`
	// MembersAgreed is how long after quiet, in seconds of virtual time,
	// every running node took to see exactly the running nodes alive
	// (real sampler, faults healed).
	MembersAgreed float64 `json:"members_agreed,omitempty" yaml:"members_agreed,omitempty"`
	// Formed is how long, in seconds of virtual time, the cluster took to
	// form (real sampler): from every node joining the first one at once
	// until every node saw every other alive, to the nearest 100 ms.
	Formed float64 `json:"formed,omitempty"`
	// FalseDetections counts running members declared dead by another
	// member (distinct member and incarnation pairs): real sampler only.
	FalseDetections int `json:"false_detections"`
	// ForgedAccepted counts records made up by byzantine nodes (future
	// versions) that an honest node's store took: always 0 with the
	// defences on.
	ForgedAccepted int `json:"forged_accepted"`
	// Quarantined sums up the honest nodes' quarantine decisions (with
	// byzantine nodes only).
	Quarantined QuarantineCounts `json:"quarantined,omitzero"`
	// InventedAlive is the most members invented by a flooder that an
	// honest node still held alive or suspect at the end. The membership
	// invariant leaves them out: they die as the failure detector gets
	// to probe them, which takes a probe round over the flooded view.
	InventedAlive int `json:"invented_alive,omitempty"`
	// InventedPeak is the most invented members an honest node held alive
	// or suspect at any step of the run, and InventedGone when, in seconds
	// of virtual time from the start of the workload, the last of them
	// left the last honest view (sampled every step; -1 if some were still
	// there at the end; 0 if there never were any).
	InventedPeak int     `json:"invented_peak,omitempty"`
	InventedGone float64 `json:"invented_gone,omitempty"`
	// Lost and Duplicated count messages the network dropped (loss,
	// partitions, down nodes) and delivered twice.
	Lost       uint64 `json:"lost"`
	Duplicated uint64 `json:"duplicated"`
	// Crashes, Restarts, Joins and Leaves count churn events done.
	Crashes  int `json:"crashes,omitempty"`
	Restarts int `json:"restarts,omitempty"`
	Joins    int `json:"joins,omitempty"`
	Leaves   int `json:"leaves,omitempty"`
	// Live is the number of running nodes at the end.
	Live int `json:"live"`
	// Curve is the number of running nodes holding every update after each
	// step (a cycle, or Cycle of virtual time in async).
	Curve []int `json:"curve,omitempty"`
	// Infective is the number of nodes still infective after each step.
	Infective []int `json:"infective,omitempty"`

	series    []Sample
	latencies []float64 // delivery latencies (or a uniform sample of them), sorted, for the CDF
	wanted    float64   // deliveries made and missing, scaled to len(latencies)
}

// Sample is the state of a run at the end of one step, for the time
// series.
type Sample struct {
	// T is the time since the start of the workload, in the report's unit.
	T float64
	// Live is the number of running nodes; Susceptible of them miss an
	// update and are not spreading any, Infective spread at least one (hot
	// rumors), Removed hold every update and spread none.
	Live, Susceptible, Infective, Removed int
	// Missing is the number of (update, running node) pairs not delivered.
	Missing int
	// Messages and Bytes are sent since the start of the workload.
	Messages, Bytes uint64
}

// LatencySummary is the delivery latency's distribution, averaged over the
// runs.
type LatencySummary struct {
	P50 float64 `json:"p50" yaml:"p50"`
	P90 float64 `json:"p90" yaml:"p90"`
	P99 float64 `json:"p99" yaml:"p99"`
	Max float64 `json:"max" yaml:"max"`
}

// Report sums up the runs of a scenario: means at the top level, spread
// beside them.
type Report struct {
	Scenario Scenario `json:"scenario" yaml:"scenario"`
	Unit     string   `json:"unit" yaml:"unit"`
	Residue  float64  `json:"residue" yaml:"residue"`
	Traffic  float64  `json:"traffic" yaml:"traffic"`
	TAvg     float64  `json:"t_avg" yaml:"t_avg"`
	TLast    float64  `json:"t_last" yaml:"t_last"`
	// Latency is the delivery latency, in Unit.
	Latency LatencySummary `json:"latency" yaml:"latency"`
	// Converged is the fraction of runs that ended with every running node
	// holding every update; Convergence is the mean, over those runs, of
	// when that last became and stayed true (in Unit; 0 if none did).
	Converged   float64 `json:"converged" yaml:"converged"`
	Convergence float64 `json:"convergence" yaml:"convergence"`
	// Updates is the mean number of client writes per run.
	Updates float64 `json:"updates" yaml:"updates"`
	// FalseDetections is the mean number of running members declared dead.
	FalseDetections float64 `json:"false_detections" yaml:"false_detections"`
	// Formed is the mean time, in seconds of virtual time, the real
	// sampler's cluster took to form: every node joining the first at
	// once, until every node saw every other alive.
	Formed float64 `json:"formed,omitempty" yaml:"formed,omitempty"`
	// WritesRefused and ClockViolations are the means of the runs' counts.
	WritesRefused   float64 `json:"writes_refused,omitempty" yaml:"writes_refused,omitempty"`
	ClockViolations float64 `json:"clock_violations" yaml:"clock_violations"`
	// ForgedAccepted is the mean number of byzantine nodes' made-up
	// records that honest nodes accepted.
	ForgedAccepted float64 `json:"forged_accepted" yaml:"forged_accepted"`
	// Quarantined sums up the honest nodes' quarantine decisions, with
	// byzantine nodes.
	Quarantined *QuarantineSummary `json:"quarantined,omitempty" yaml:"quarantined,omitempty"`
	// InventedGone is the mean of the runs' InventedGone: how long members
	// invented by a flooder stayed in honest views; -1 if in some run some
	// were still there at the end.
	InventedGone float64 `json:"invented_gone,omitempty" yaml:"invented_gone,omitempty"`
	// Spread holds the standard deviation of each mean over the runs.
	Spread map[string]float64 `json:"spread" yaml:"spread"`
	// MessagesPerNode and BytesPerNode count all traffic, of every kind,
	// per node; MessagesPerUpdate and BytesPerUpdate per client write.
	MessagesPerNode   float64     `json:"messages_per_node" yaml:"messages_per_node"`
	BytesPerNode      float64     `json:"bytes_per_node" yaml:"bytes_per_node"`
	MessagesPerUpdate float64     `json:"messages_per_update" yaml:"messages_per_update"`
	BytesPerUpdate    float64     `json:"bytes_per_update" yaml:"bytes_per_update"`
	Runs              []RunResult `json:"runs" yaml:"runs"`
}

// Validate checks the scenario and fills defaults.
func (s *Scenario) Validate() error {
	if s.Nodes < 2 {
		return fmt.Errorf("sim: --nodes %d: need at least 2", s.Nodes)
	}
	if s.Runs < 1 {
		s.Runs = 1
	}
	if s.Cycle <= 0 {
		s.Cycle = Duration(time.Second)
	}
	if s.Duration <= 0 {
		s.Duration = Duration(10 * time.Minute)
	}
	if s.Drain <= 0 {
		s.Drain = Duration(time.Minute)
	}
	if s.Fanout < 1 {
		return fmt.Errorf("sim: --fanout %d: need at least 1", s.Fanout)
	}
	if s.K < 1 {
		return fmt.Errorf("sim: --k %d: need at least 1", s.K)
	}
	if s.Loss < 0 || s.Loss >= 1 {
		return fmt.Errorf("sim: --loss %v: want a probability in [0, 1)", s.Loss)
	}
	if s.Duplicate < 0 || s.Duplicate > 1 {
		return fmt.Errorf("sim: --duplicate %v: want a probability in [0, 1]", s.Duplicate)
	}
	if s.MailWindow < 0 {
		return fmt.Errorf("sim: --mail-window %v: want a duration >= 0", s.MailWindow)
	}
	if s.SyncDelay < 0 {
		return fmt.Errorf("sim: --sync-delay %v: want a duration >= 0", s.SyncDelay)
	}
	if s.Bandwidth < 0 {
		return fmt.Errorf("sim: --bandwidth %d: want bytes per second, or 0 for unlimited", s.Bandwidth)
	}
	switch s.Model {
	case "cycles", "async":
	default:
		return fmt.Errorf("sim: --model %q: want cycles or async", s.Model)
	}
	switch s.Sampler {
	case "oracle", "real":
	default:
		return fmt.Errorf("sim: --sampler %q: want real or oracle", s.Sampler)
	}
	var rc rumor.Config
	if err := rc.SetRule(s.Interest); err != nil {
		return fmt.Errorf("sim: --interest: %w", err)
	}
	if _, err := rumor.ParseDirection(s.Direction); err != nil {
		return fmt.Errorf("sim: --direction: %w", err)
	}
	if err := s.Latency.validate(); err != nil {
		return err
	}
	m, err := s.mechanisms()
	if err != nil {
		return err
	}
	if s.TreeFanout < 0 || s.PruneAfter < 0 || s.EagerWindow < 0 || s.IHaveWindow < 0 || s.GraftTimeout < 0 {
		return errors.New("sim: --tree-fanout, --prune-after, --eager-window, --ihave-window and --graft-timeout must not be negative")
	}
	if m.directMail && s.Sampler != "real" {
		// Direct mail keeps an outbox per member and drops it when the
		// member is declared dead: the oracle view announces no deaths,
		// so mail to crashed nodes would be retried for ever.
		return fmt.Errorf("sim: --mechanism %s: direct mail needs --sampler real", s.Mechanism)
	}
	if s.Signed && s.Sampler != "real" {
		// Certificates travel with membership (join replies, and on
		// request to members heard first-hand), which does not run over
		// the oracle view: every first receipt would be refused for an
		// unknown origin, a different protocol from the one deployed.
		return fmt.Errorf("sim: --signed needs --sampler real: certificates travel with membership")
	}
	w := &s.Workload
	if w.Rate < 0 || w.Deletes < 0 || w.Deletes > 1 || w.Keys < 0 || w.ValueSize < 0 || w.Start < 0 || w.Stop < 0 {
		return fmt.Errorf("sim: workload: want rate >= 0, deletes in [0, 1], keys, value_size, start and stop >= 0")
	}
	if w.Keys == 0 {
		w.Keys = 100
	}
	if w.ValueSize == 0 {
		w.ValueSize = 16
	}
	c := s.Churn
	if c.Crash < 0 || c.Join < 0 || c.Leave < 0 || c.RestartAfter < 0 {
		return fmt.Errorf("sim: churn: want rates and restart_after >= 0")
	}
	for i := range s.Events {
		if err := s.Events[i].validate(); err != nil {
			return err
		}
	}
	total := 0.0
	for _, b := range s.Byzantine {
		if err := b.validate(); err != nil {
			return err
		}
		total += b.Fraction
	}
	if total >= 0.5 {
		return fmt.Errorf("sim: byzantine fractions add up to %v: want less than half the nodes", total)
	}
	if len(s.Byzantine) > 0 && s.Sampler != "real" {
		return errors.New("sim: byzantine nodes need --sampler real (the oracle sampler bypasses membership, where the defences are)")
	}
	return nil
}

type mechanisms struct{ rumor, directMail, plumtree, antiEntropy bool }

// mechanisms parses Mechanism: names joined by "+".
func (s *Scenario) mechanisms() (mechanisms, error) {
	var m mechanisms
	bad := fmt.Errorf("sim: --mechanism %q: want rumor, direct-mail, plumtree or anti-entropy, or several joined by + (rumor+anti-entropy)", s.Mechanism)
	for name := range strings.SplitSeq(s.Mechanism, "+") {
		var p *bool
		switch name {
		case "rumor":
			p = &m.rumor
		case "direct-mail":
			p = &m.directMail
		case "plumtree":
			p = &m.plumtree
		case "anti-entropy":
			p = &m.antiEntropy
		default:
			return mechanisms{}, bad
		}
		if *p {
			return mechanisms{}, bad
		}
		*p = true
	}
	return m, nil
}

// configure returns the engine configuration for node i of the scenario.
func (s *Scenario) configure(c *Cluster, cfg *engine.Config) error {
	m, err := s.mechanisms()
	if err != nil {
		return err
	}
	cfg.DirectMail = m.directMail
	cfg.DirectMailMaxPeers = 0 // the scenario asked for it: mail everyone
	cfg.DirectMailWindow = time.Duration(s.MailWindow)
	cfg.RumorMongering = m.rumor
	cfg.Plumtree = m.plumtree
	if s.TreeFanout > 0 {
		cfg.Tree.Fanout = s.TreeFanout
	}
	cfg.Tree.LazyFanout = s.LazyFanout
	cfg.Tree.EagerWindow = time.Duration(s.EagerWindow)
	if s.IHaveWindow > 0 {
		cfg.Tree.IHaveWindow = time.Duration(s.IHaveWindow)
	}
	if s.GraftTimeout > 0 {
		cfg.Tree.GraftTimeout = time.Duration(s.GraftTimeout)
	}
	if s.PruneAfter > 0 {
		cfg.Tree.PruneAfter = s.PruneAfter
	}
	cfg.AntiEntropy = m.antiEntropy
	// The textbook runs measure each mechanism on its own: a repair does
	// not start a rumor.
	cfg.RumorRepairs = false
	if m.antiEntropy {
		a := &cfg.AE
		a.Interval = time.Duration(s.Cycle)
		if s.Model == "cycles" {
			a.Jitter = 0
		}
		mode, err := antientropy.ParseMode(s.Direction)
		if err != nil {
			return fmt.Errorf("sim: --direction: %w", err)
		}
		a.Mode = mode
	}
	r := &cfg.Rumor
	_ = r.SetRule(s.Interest)
	r.Direction, _ = rumor.ParseDirection(s.Direction)
	r.K = s.K
	r.Fanout = s.Fanout
	r.Interval = time.Duration(s.Cycle)
	r.MaxAge = 0 // the textbook model has no age limit
	r.MaxHot = 0
	if s.Model == "cycles" {
		r.Jitter = 0
	}
	if s.Sampler == "oracle" {
		cfg.View = oracle{c: c, self: cfg.Name}
	}
	if s.Suspicion > 0 {
		cfg.Membership.SuspicionTimeout = time.Duration(s.Suspicion)
	}
	cfg.Trust.Disabled = s.NoDefences
	return nil
}

// Progress tells how far a simulation has got.
type Progress struct {
	Run, Runs int // the run under way, from 1, of how many
	// Virtual is the virtual time the run has reached since the start of
	// its workload; Limit is the most it may run.
	Virtual, Limit time.Duration
	// Phase is "forming" while the real sampler's cluster forms, then
	// "running", and "done" once the run is over.
	Phase string
}

// Run runs the scenario Runs times, with seeds Seed..Seed+Runs-1, and
// reports means and spread. progress, if not nil, is called at every step
// of every run, and when each run ends.
func Run(s Scenario, progress func(Progress)) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Scenario: s, Unit: "cycles", Spread: map[string]float64{}}
	if s.Model == "async" {
		rep.Unit = "seconds"
	}
	for i := range s.Runs {
		var p func(Progress)
		if progress != nil {
			p = func(pr Progress) {
				pr.Run, pr.Runs = i+1, s.Runs
				progress(pr)
			}
		}
		r, err := runOnce(s, s.Seed+uint64(i), p)
		if err != nil {
			return nil, fmt.Errorf("sim: run %d (seed %d): %w", i, s.Seed+uint64(i), err)
		}
		rep.Runs = append(rep.Runs, *r)
	}
	stat := func(name string, runs []RunResult, get func(RunResult) float64) float64 {
		if len(runs) == 0 {
			rep.Spread[name] = 0
			return 0
		}
		var sum, sq float64
		for _, r := range runs {
			sum += get(r)
		}
		mean := sum / float64(len(runs))
		for _, r := range runs {
			sq += (get(r) - mean) * (get(r) - mean)
		}
		rep.Spread[name] = math.Sqrt(sq / float64(len(runs)))
		return mean
	}
	all := rep.Runs
	rep.Residue = stat("residue", all, func(r RunResult) float64 { return r.Residue })
	rep.Traffic = stat("traffic", all, func(r RunResult) float64 { return r.Traffic })
	rep.TAvg = stat("t_avg", all, func(r RunResult) float64 { return r.TAvg })
	rep.TLast = stat("t_last", all, func(r RunResult) float64 { return r.TLast })
	rep.Latency.P50 = stat("p50", all, func(r RunResult) float64 { return r.P50 })
	rep.Latency.P90 = stat("p90", all, func(r RunResult) float64 { return r.P90 })
	rep.Latency.P99 = stat("p99", all, func(r RunResult) float64 { return r.P99 })
	rep.Latency.Max = stat("max", all, func(r RunResult) float64 { return r.Max })
	rep.Converged = stat("converged", all, func(r RunResult) float64 {
		if r.Converged {
			return 1
		}
		return 0
	})
	var conv []RunResult
	for _, r := range all {
		if r.Converged {
			conv = append(conv, r)
		}
	}
	rep.Convergence = stat("convergence", conv, func(r RunResult) float64 { return r.Convergence })
	rep.Updates = stat("updates", all, func(r RunResult) float64 { return float64(r.Updates) })
	rep.FalseDetections = stat("false_detections", all, func(r RunResult) float64 { return float64(r.FalseDetections) })
	rep.Formed = stat("formed", all, func(r RunResult) float64 { return r.Formed })
	rep.WritesRefused = stat("writes_refused", all, func(r RunResult) float64 { return float64(r.WritesRefused) })
	rep.ForgedAccepted = stat("forged_accepted", all, func(r RunResult) float64 { return float64(r.ForgedAccepted) })
	if len(s.Byzantine) > 0 {
		q := &QuarantineSummary{}
		q.Byzantine = stat("quarantined_byzantine", all, func(r RunResult) float64 { return float64(r.Quarantined.Byzantine) })
		q.False = stat("quarantined_false", all, func(r RunResult) float64 { return float64(r.Quarantined.False) })
		q.All = stat("quarantined_all", all, func(r RunResult) float64 { return r.Quarantined.All })
		for _, r := range all {
			if r.Quarantined.All < 0 {
				q.All = -1
			}
		}
		rep.Quarantined = q
		rep.InventedGone = stat("invented_gone", all, func(r RunResult) float64 { return r.InventedGone })
		for _, r := range all {
			if r.InventedGone < 0 {
				rep.InventedGone = -1
			}
		}
	}
	rep.ClockViolations = stat("clock_violations", all, func(r RunResult) float64 { return float64(r.ClockViolations) })
	rep.MessagesPerNode = stat("messages_per_node", all, func(r RunResult) float64 { return float64(r.Messages) / float64(s.Nodes) })
	rep.BytesPerNode = stat("bytes_per_node", all, func(r RunResult) float64 { return float64(r.Bytes) / float64(s.Nodes) })
	perUpdate := func(x uint64, r RunResult) float64 { return float64(x) / float64(max(r.Updates, 1)) }
	rep.MessagesPerUpdate = stat("messages_per_update", all, func(r RunResult) float64 { return perUpdate(r.Messages, r) })
	rep.BytesPerUpdate = stat("bytes_per_update", all, func(r RunResult) float64 { return perUpdate(r.Bytes, r) })
	return rep, nil
}
