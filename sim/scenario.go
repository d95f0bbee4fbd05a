package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/rumor"
	"github.com/hearsaydb/hearsay/store"
)

// Scenario describes one simulation: the cluster, the protocol
// configuration, the network and the workload.
type Scenario struct {
	// Nodes is the cluster size.
	Nodes int `json:"nodes" yaml:"nodes"`
	// Model is "cycles" (Demers et al.'s synchronous model: every node acts
	// once per cycle, messages arrive within the cycle, a node infected in
	// a cycle spreads from the next) or "async" (jittered timers, latency
	// drawn per message).
	Model string `json:"model" yaml:"model"`
	// Mechanism is "rumor", "anti-entropy" or "rumor+anti-entropy".
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
	// Latency is the one-way message delay in the async model.
	Latency Latency `json:"latency" yaml:"latency"`
	// Sampler is "oracle" (uniform over the true live set) or "real" (the
	// membership component; the cluster forms by joining first).
	Sampler string `json:"sampler" yaml:"sampler"`
	// Seed seeds the first run; run i uses Seed+i.
	Seed uint64 `json:"seed" yaml:"seed"`
	// Runs is how many runs to average.
	Runs int `json:"runs" yaml:"runs"`
	// Duration bounds each run in virtual time.
	Duration time.Duration `json:"duration" yaml:"duration"`
	// Cycle is the length of a cycle (cycles model) or gossip interval.
	Cycle time.Duration `json:"cycle" yaml:"cycle"`
}

// DefaultScenario is Demers et al.'s textbook setting: 1,000 nodes, push
// rumor mongering with feedback and a counter, k=2, one partner per cycle.
func DefaultScenario() Scenario {
	return Scenario{
		Nodes: 1000, Model: "cycles", Mechanism: "rumor", Direction: "push", Interest: "feedback-counter",
		K: 2, Fanout: 1, Sampler: "oracle", Seed: 1, Runs: 1, Duration: 10 * time.Minute, Cycle: time.Second,
		Latency: Latency{Dist: "constant", Mean: 10 * time.Millisecond},
	}
}

// RunResult is what one run measured.
type RunResult struct {
	Seed uint64 `json:"seed" yaml:"seed"`
	// Residue is the fraction of nodes that never received the update.
	Residue float64 `json:"residue" yaml:"residue"`
	// Traffic is update-carrying messages sent, divided by the node count.
	Traffic float64 `json:"traffic" yaml:"traffic"`
	// TAvg is the mean, over the nodes that received the update (the
	// origin excluded), of when they first did: in cycles for the cycles
	// model, in seconds for async.
	TAvg float64 `json:"t_avg" yaml:"t_avg"`
	// TLast is when the last node that ever received it did.
	TLast float64 `json:"t_last" yaml:"t_last"`
	// Messages and Bytes count everything sent, of every kind.
	Messages uint64 `json:"messages" yaml:"messages"`
	Bytes    uint64 `json:"bytes" yaml:"bytes"`
	// Latency percentiles of delivery, in the same unit as TAvg.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	// Curve is the number of nodes holding the update after each cycle
	// (or each Cycle of virtual time in async).
	Curve []int `json:"curve,omitempty"`
	// Infective is the number of nodes still infective after each cycle.
	Infective []int `json:"infective,omitempty"`

	latencies []float64 // every node's first-receipt time, for the CDF
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
	// Spread holds the standard deviation of each mean over the runs.
	Spread map[string]float64 `json:"spread" yaml:"spread"`
	// MessagesPerNode and BytesPerNode count all traffic, of every kind.
	MessagesPerNode float64     `json:"messages_per_node" yaml:"messages_per_node"`
	BytesPerNode    float64     `json:"bytes_per_node" yaml:"bytes_per_node"`
	Runs            []RunResult `json:"runs" yaml:"runs"`
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
		s.Cycle = time.Second
	}
	if s.Duration <= 0 {
		s.Duration = 10 * time.Minute
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
	_, err := s.mechanisms()
	return err
}

type mechanisms struct{ rumor, antiEntropy bool }

func (s *Scenario) mechanisms() (mechanisms, error) {
	switch s.Mechanism {
	case "rumor":
		return mechanisms{rumor: true}, nil
	case "anti-entropy":
		return mechanisms{antiEntropy: true}, nil
	case "rumor+anti-entropy":
		return mechanisms{rumor: true, antiEntropy: true}, nil
	}
	return mechanisms{}, fmt.Errorf("sim: --mechanism %q: want rumor, anti-entropy or rumor+anti-entropy", s.Mechanism)
}

// errNoAntiEntropy is returned until the anti-entropy mechanism is wired
// into the engine.
var errNoAntiEntropy = errors.New("sim: anti-entropy is not available in this build")

// configure returns the engine configuration for node i of the scenario.
func (s *Scenario) configure(c *Cluster, cfg *engine.Config) error {
	m, err := s.mechanisms()
	if err != nil {
		return err
	}
	cfg.DirectMail = false
	cfg.RumorMongering = m.rumor
	if m.antiEntropy {
		return errNoAntiEntropy
	}
	r := &cfg.Rumor
	_ = r.SetRule(s.Interest)
	r.Direction, _ = rumor.ParseDirection(s.Direction)
	r.K = s.K
	r.Fanout = s.Fanout
	r.Interval = s.Cycle
	r.MaxAge = 0 // the textbook model has no age limit
	r.MaxHot = 0
	if s.Model == "cycles" {
		r.Jitter = 0
	}
	if s.Sampler == "oracle" {
		cfg.Peers = c
	}
	cfg.Membership.SuspicionTimeout = time.Hour
	return nil
}

// Run runs the scenario Runs times, with seeds Seed..Seed+Runs-1, and
// reports means and spread. progress, if not nil, is called after each run.
func Run(s Scenario, progress func(done, total int)) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Scenario: s, Unit: "cycles", Spread: map[string]float64{}}
	if s.Model == "async" {
		rep.Unit = "seconds"
	}
	for i := range s.Runs {
		r, err := runOnce(s, s.Seed+uint64(i))
		if err != nil {
			return nil, fmt.Errorf("sim: run %d (seed %d): %w", i, s.Seed+uint64(i), err)
		}
		rep.Runs = append(rep.Runs, *r)
		if progress != nil {
			progress(i+1, s.Runs)
		}
	}
	stat := func(name string, get func(RunResult) float64) float64 {
		var sum, sq float64
		for _, r := range rep.Runs {
			sum += get(r)
		}
		mean := sum / float64(len(rep.Runs))
		for _, r := range rep.Runs {
			sq += (get(r) - mean) * (get(r) - mean)
		}
		rep.Spread[name] = math.Sqrt(sq / float64(len(rep.Runs)))
		return mean
	}
	rep.Residue = stat("residue", func(r RunResult) float64 { return r.Residue })
	rep.Traffic = stat("traffic", func(r RunResult) float64 { return r.Traffic })
	rep.TAvg = stat("t_avg", func(r RunResult) float64 { return r.TAvg })
	rep.TLast = stat("t_last", func(r RunResult) float64 { return r.TLast })
	rep.MessagesPerNode = stat("messages_per_node", func(r RunResult) float64 { return float64(r.Messages) / float64(s.Nodes) })
	rep.BytesPerNode = stat("bytes_per_node", func(r RunResult) float64 { return float64(r.Bytes) / float64(s.Nodes) })
	return rep, nil
}

// runOnce runs one update from one node until no node is infective (or,
// for anti-entropy alone, until every node has it), within Duration.
func runOnce(s Scenario, seed uint64) (*RunResult, error) {
	opts := Options{Seed: seed, Loss: s.Loss}
	if s.Model == "async" {
		opts.Latency, opts.Jitter = s.Latency.Mean, 0
		opts.Delay = s.Latency.draw
	}
	c := New(opts)
	var cfgErr error
	for i := range s.Nodes {
		_, err := c.AddNode(fmt.Sprintf("n%d", i), func(cfg *engine.Config) {
			if err := s.configure(c, cfg); err != nil {
				cfgErr = err
			}
		})
		if cfgErr != nil {
			return nil, cfgErr
		}
		if err != nil {
			return nil, err
		}
	}
	if s.Sampler == "real" {
		if err := formCluster(c, s.Duration); err != nil {
			return nil, err
		}
	}
	const key = "update"
	first := make([]time.Time, len(c.nodes))
	index := make(map[*Node]int, len(c.nodes))
	for i, nd := range c.nodes {
		index[nd] = i
	}
	got := 0
	c.OnChange = func(n *Node, r store.Record) {
		if i := index[n]; string(r.Key) == key && first[i].IsZero() {
			first[i] = c.now
			got++
		}
	}
	res := &RunResult{Seed: seed}
	var traffic uint64
	c.OnSend = func(_ *Node, m engine.Message, _ int) {
		if m.Env.Updates() > 0 {
			traffic++
		}
	}
	base := c.stats
	// Align the write with a cycle boundary so that cycle numbers count
	// from it: the origin spreads in cycle 1.
	origin := c.nodes[c.rng.IntN(len(c.nodes))]
	start := c.now
	if _, err := origin.Put(key, "value"); err != nil {
		return nil, err
	}
	m, _ := s.mechanisms()
	done := func() bool {
		if got == len(c.nodes) && !m.rumor {
			return true
		}
		if !m.rumor {
			return false
		}
		for _, nd := range c.live {
			if nd.Engine.Stats().Rumor.Hot > 0 {
				return false
			}
		}
		return !m.antiEntropy || got == len(c.nodes)
	}
	for step := 0; !done(); step++ {
		if c.now.Sub(start) >= s.Duration {
			break
		}
		if err := c.RunFor(s.Cycle); err != nil {
			return nil, err
		}
		res.Curve = append(res.Curve, got)
		inf := 0
		if m.rumor {
			for _, nd := range c.live {
				if nd.Engine.Stats().Rumor.Hot > 0 {
					inf++
				}
			}
		}
		res.Infective = append(res.Infective, inf)
	}
	unit := float64(s.Cycle)
	if s.Model == "async" {
		unit = float64(time.Second)
	}
	var ts []float64
	for i, t := range first {
		if t.IsZero() || c.nodes[i] == origin {
			continue
		}
		ts = append(ts, float64(t.Sub(start))/unit)
	}
	slices.Sort(ts)
	res.latencies = ts
	res.Residue = float64(len(c.nodes)-got) / float64(len(c.nodes))
	res.Traffic = float64(traffic) / float64(len(c.nodes))
	if len(ts) > 0 {
		sum := 0.0
		for _, t := range ts {
			sum += t
		}
		res.TAvg = sum / float64(len(ts))
		res.TLast = ts[len(ts)-1]
		q := func(p float64) float64 { return ts[int(p*float64(len(ts)-1))] }
		res.P50, res.P90, res.P99 = q(0.5), q(0.9), q(0.99)
	}
	res.Messages = c.stats.Sent - base.Sent
	res.Bytes = c.stats.Bytes - base.Bytes
	return res, nil
}

// formCluster joins every node through the first and runs until every node
// sees every other alive. Early joiners would learn of later ones only by
// gossip; to start measurements from a formed cluster quickly, every node
// joins a second time once the seed knows everyone, and so receives the
// full member list.
func formCluster(c *Cluster, limit time.Duration) error {
	seed := c.nodes[0]
	for _, nd := range c.nodes[1:] {
		nd.Join(seed.Name)
	}
	n := len(c.nodes)
	start := c.now
	for seed.Engine.NumLive() < n && c.now.Sub(start) < limit {
		if err := c.RunFor(100 * time.Millisecond); err != nil {
			return err
		}
	}
	for _, nd := range c.nodes[1:] {
		if nd.Engine.NumLive() < n {
			nd.Join(seed.Name)
		}
	}
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
	}
}
