package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// RandomScenario draws a scenario from seed, for exploration: a small
// cluster (3 to 7 nodes) on the real membership protocol, anti-entropy with
// a random choice of direct mail and rumor mongering on top, a stream of
// writes and deletes over few keys, message loss, duplication and
// reordering, and a random schedule of faults, each healed after a while:
// partitions, one-way cuts, loss bursts, crashes (losing unsynced writes)
// and restarts, joins, leaves, clock offsets, full disks, failing and slow
// syncs. At Duration every fault heals (partitions, cuts, disks, clocks;
// every node that is down restarts), so the run must end with the
// invariants of a healed cluster: identical replicas, every acknowledged
// write kept, no deleted key back, membership agreement.
//
// The same seed gives the same scenario; its Seed is seed, so running it
// gives the same run as `hearsay sim --seed seed --explore 1`.
func RandomScenario(seed uint64) Scenario {
	rng := rand.New(rand.NewPCG(seed, 0xe4a1e5ce))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	ms := func(lo, hi int) Duration {
		return Duration(time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond)
	}
	s := Scenario{
		Nodes:     3 + rng.IntN(5),
		Model:     "async",
		Sampler:   "real",
		Mechanism: pick("anti-entropy", "rumor+anti-entropy", "direct-mail+anti-entropy", "direct-mail+rumor+anti-entropy"),
		Direction: pick("push-pull", "push-pull", "push", "pull"),
		Interest:  pick("feedback-counter", "feedback-coin", "blind-counter", "blind-coin"),
		K:         1 + rng.IntN(3),
		Fanout:    1 + rng.IntN(2),
		Seed:      seed,
		Runs:      1,
		Cycle:     Duration(time.Second),
		Suspicion: Duration(2 * time.Second),
		Drain:     Duration(90 * time.Second),
	}
	dur := 20 + rng.IntN(21)
	s.Duration = Duration(time.Duration(dur) * time.Second)
	if rng.IntN(2) == 0 {
		s.Latency = Latency{Dist: "uniform", Min: time.Millisecond, Max: time.Duration(2+rng.IntN(30)) * time.Millisecond}
	} else {
		s.Latency = Latency{Dist: "lognormal", Mean: time.Duration(2+rng.IntN(10)) * time.Millisecond, Sigma: 0.5}
	}
	s.Latency.Mean = max(s.Latency.Mean, (s.Latency.Min+s.Latency.Max)/2)
	if rng.IntN(3) > 0 {
		s.Loss = float64(rng.IntN(11)) / 100
	}
	if rng.IntN(3) == 0 {
		s.Duplicate = float64(rng.IntN(11)) / 100
	}
	if rng.IntN(4) > 0 {
		s.SyncDelay = ms(1, 20)
	}
	s.Workload = Workload{
		Rate:      float64(5 + rng.IntN(26)),
		Keys:      5 + rng.IntN(26),
		Deletes:   float64(rng.IntN(31)) / 100,
		ValueSize: 16,
	}
	// Faults, each at a random time in the first 80% of the run and
	// healed after a while (by the end at the latest).
	end := time.Duration(dur) * time.Second
	node := func() string { return nodeName(rng.IntN(s.Nodes)) }
	for range 2 + rng.IntN(7) {
		at := time.Duration(rng.Int64N(int64(end) * 8 / 10))
		heal := at + time.Duration(1+rng.IntN(10))*time.Second
		if heal > end {
			heal = end
		}
		ev := func(t time.Duration, e Event) { e.At = Duration(t); s.Events = append(s.Events, e) }
		switch rng.IntN(11) {
		case 0:
			ev(at, Event{Partition: &PartitionSpec{Fraction: float64(2+rng.IntN(4)) / 10}})
			ev(heal, Event{Heal: true})
		case 1:
			a, b := node(), node()
			if a == b {
				continue
			}
			ev(at, Event{Cut: &LinkSpec{From: NodeList{a}, To: NodeList{b}}})
			ev(heal, Event{Mend: &LinkSpec{From: NodeList{a}, To: NodeList{b}}})
		case 2:
			burst, base := float64(10+rng.IntN(21))/100, s.Loss
			ev(at, Event{Loss: &burst})
			ev(heal, Event{Loss: &base})
		case 3, 4:
			ev(at, Event{Crash: &NodeSet{Count: 1}})
			ev(heal, Event{Restart: &NodeSet{Count: 1}})
		case 5:
			ev(at, Event{Join: 1})
		case 6:
			ev(at, Event{Leave: &NodeSet{Count: 1}})
			ev(heal, Event{Restart: &NodeSet{Count: 1}})
		case 7:
			n := node()
			off := Duration(time.Duration(1+rng.IntN(5)) * time.Second)
			if rng.IntN(2) == 0 {
				off = -off
			}
			ev(at, Event{Clock: &ClockSpec{Nodes: NodeSet{Names: NodeList{n}}, Offset: off}})
			ev(heal, Event{Clock: &ClockSpec{Nodes: NodeSet{Names: NodeList{n}}}})
		case 8:
			n := node()
			st := &StorageSpec{Nodes: NodeSet{Names: NodeList{n}}}
			switch rng.IntN(3) {
			case 0:
				st.Full = true
			case 1:
				st.ApplyError = true
			default:
				d := ms(100, 500)
				st.SyncDelay = &d
			}
			ev(at, Event{Storage: st})
			d := s.SyncDelay
			ev(heal, Event{Storage: &StorageSpec{Nodes: NodeSet{Names: NodeList{n}}, SyncDelay: &d}})
		case 9:
			n := node()
			ev(at, Event{Storage: &StorageSpec{Nodes: NodeSet{Names: NodeList{n}}, SyncError: true}})
			ev(heal, Event{Storage: &StorageSpec{Nodes: NodeSet{Names: NodeList{n}}}})
			ev(heal, Event{Restart: &NodeSet{Names: NodeList{n}}})
		case 10:
			ev(at, Event{Crash: &NodeSet{Count: 1 + rng.IntN(max(1, s.Nodes/2))}})
			ev(heal, Event{Restart: &NodeSet{Fraction: 1}})
		}
	}
	sortEvents(s.Events)
	// Everything heals at the end.
	d := s.SyncDelay
	s.Events = append(s.Events,
		Event{At: Duration(end), Heal: true},
		Event{At: Duration(end), Storage: &StorageSpec{Nodes: NodeSet{Fraction: 1}, SyncDelay: &d}},
		Event{At: Duration(end), Restart: &NodeSet{Fraction: 1}},
		Event{At: Duration(end), Clock: &ClockSpec{Nodes: NodeSet{Fraction: 1}}},
	)
	return s
}

// sortEvents orders events by time, keeping the order of simultaneous
// ones.
func sortEvents(es []Event) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].At < es[j-1].At; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// Failure is an explored seed whose run broke an invariant (or failed).
type Failure struct {
	Seed     uint64   `json:"seed"`
	Scenario Scenario `json:"scenario"`
	// Err is the violation (a *ViolationError) or the run's error.
	Err error `json:"-"`
	// Message is Err as text.
	Message string `json:"error"`
	// File holds the scenario drawn; Shrunk, when shrinking found one, a
	// smaller scenario that still fails, and ShrunkFile holds it.
	File       string    `json:"file,omitempty"`
	Shrunk     *Scenario `json:"shrunk,omitempty"`
	ShrunkFile string    `json:"shrunk_file,omitempty"`
	ShrunkErr  string    `json:"shrunk_error,omitempty"`
}

// Reproduce is the one-line command that runs the failing seed again.
func (f Failure) Reproduce() string {
	return fmt.Sprintf("hearsay sim --seed %d --explore 1", f.Seed)
}

// ExploreOptions configures Explore.
type ExploreOptions struct {
	// Seeds is how many seeds to run, from First.
	First uint64
	Seeds int
	// Dir, if set, is where each failing scenario is written as YAML
	// (sim-failure-SEED.yaml, and sim-failure-SEED-min.yaml shrunk).
	Dir string
	// ShrinkRuns bounds the runs spent shrinking each failure; 0: no
	// shrinking.
	ShrinkRuns int
	// Progress, if set, is called after each seed.
	Progress func(done int, f *Failure)
}

// ExploreReport sums up an exploration.
type ExploreReport struct {
	Seeds    int       `json:"seeds"`
	Failures []Failure `json:"failures"`
	// Writes, Acknowledged, Crashes and Virtual sum over the runs: client
	// writes, of them acknowledged, crashes, and virtual seconds.
	Writes       int     `json:"writes"`
	Acknowledged int     `json:"acknowledged"`
	Unacked      int     `json:"unacknowledged"`
	Crashes      int     `json:"crashes"`
	FailStops    int     `json:"fail_stops"`
	Virtual      float64 `json:"virtual_seconds"`
	// MaxSettled is the longest time, over the runs, replicas took to
	// become identical after the last fault healed; SettleBound the bound.
	MaxSettled  float64 `json:"max_settled"`
	SettleBound float64 `json:"settle_bound"`
}

// Explore runs Seeds random scenarios (RandomScenario) and checks the
// invariants of each; failures are written to Dir and shrunk.
func Explore(o ExploreOptions) (*ExploreReport, error) {
	rep := &ExploreReport{}
	for i := range o.Seeds {
		seed := o.First + uint64(i)
		s := RandomScenario(seed)
		res, err := runExplored(s)
		rep.Seeds++
		var f *Failure
		if res != nil {
			rep.Writes += len(res.hist)
			rep.Acknowledged += res.Acknowledged
			rep.Unacked += res.Unacknowledged
			rep.Crashes += res.Crashes
			rep.FailStops += res.FailStops
			rep.Virtual += res.virtual
			rep.MaxSettled = max(rep.MaxSettled, res.Settled)
			rep.SettleBound = res.SettleBound
		}
		if err != nil {
			f = &Failure{Seed: seed, Scenario: s, Err: err, Message: err.Error()}
			if err := o.record(f); err != nil {
				return rep, err
			}
			rep.Failures = append(rep.Failures, *f)
		}
		if o.Progress != nil {
			o.Progress(i+1, f)
		}
	}
	return rep, nil
}

// exploredResult is a run's result with what exploration sums.
type exploredResult struct {
	*RunResult
	hist    []Op
	virtual float64
}

// runExplored runs s once with its seed.
func runExplored(s Scenario) (*exploredResult, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	r, err := newRunner(s, s.Seed, nil)
	if err != nil {
		return nil, err
	}
	r.stopSettled = true
	res, err := r.run()
	if res == nil {
		return nil, err
	}
	return &exploredResult{RunResult: res, hist: r.hist, virtual: r.c.now.Sub(r.start).Seconds()}, err
}

// record writes the failing scenario and its shrunk form.
func (o ExploreOptions) record(f *Failure) error {
	if o.Dir != "" {
		f.File = filepath.Join(o.Dir, fmt.Sprintf("sim-failure-%d.yaml", f.Seed))
		if err := WriteScenario(f.File, f.Scenario); err != nil {
			return err
		}
	}
	if o.ShrinkRuns <= 0 {
		return nil
	}
	kind := violationKinds(f.Err)
	small, err := Shrink(f.Scenario, o.ShrinkRuns, func(s Scenario) error {
		_, err := runExplored(s)
		if err != nil && violationKinds(err) == kind {
			return err
		}
		return nil
	})
	if err == nil {
		return nil // nothing smaller fails the same way
	}
	f.Shrunk, f.ShrunkErr = &small, err.Error()
	if o.Dir != "" {
		f.ShrunkFile = filepath.Join(o.Dir, fmt.Sprintf("sim-failure-%d-min.yaml", f.Seed))
		return WriteScenario(f.ShrunkFile, small)
	}
	return nil
}

// violationKinds names the invariants err broke, to tell whether a shrunk
// scenario fails the same way.
func violationKinds(err error) string {
	var ve *ViolationError
	if !errors.As(err, &ve) {
		return "error"
	}
	seen := map[string]bool{}
	var out []string
	for _, v := range ve.Violations {
		if !seen[v.Invariant] {
			seen[v.Invariant] = true
			out = append(out, v.Invariant)
		}
	}
	return strings.Join(out, ",")
}

// Shrink looks for a smaller scenario that still fails: it drops events
// one at a time, removes nodes, turns off loss, duplication, slow syncs,
// churn and mechanisms, and shortens the workload, keeping each change
// after which fails still returns an error. It spends at most runs runs
// and returns the smallest failing scenario found with its error, or s and
// nil when no smaller one failed.
func Shrink(s Scenario, runs int, fails func(Scenario) error) (Scenario, error) {
	var lastErr error
	try := func(c Scenario) bool {
		if runs <= 0 {
			return false
		}
		runs--
		if err := fails(c); err != nil {
			lastErr = err
			return true
		}
		return false
	}
	for progress := true; progress && runs > 0; {
		progress = false
		// Drop events, later ones first: the final heal goes only if the
		// failure does not need it.
		for i := len(s.Events) - 1; i >= 0 && runs > 0; i-- {
			c := s
			c.Events = append(append([]Event(nil), s.Events[:i]...), s.Events[i+1:]...)
			if try(c) {
				s, progress = c, true
			}
		}
		var cands []Scenario
		if s.Nodes > 2 {
			c := s
			c.Nodes--
			cands = append(cands, c)
		}
		if s.Loss > 0 {
			c := s
			c.Loss = 0
			cands = append(cands, c)
		}
		if s.Duplicate > 0 {
			c := s
			c.Duplicate = 0
			cands = append(cands, c)
		}
		if s.SyncDelay > 0 {
			c := s
			c.SyncDelay = 0
			cands = append(cands, c)
		}
		if s.Churn.any() {
			c := s
			c.Churn = Churn{}
			cands = append(cands, c)
		}
		if m := s.Mechanism; m != "anti-entropy" && strings.HasSuffix(m, "anti-entropy") {
			c := s
			c.Mechanism = "anti-entropy"
			cands = append(cands, c)
		}
		if w := s.Workload; w.Rate > 1 {
			c := s
			c.Workload.Rate = float64(int(w.Rate / 2))
			cands = append(cands, c)
		}
		if w := s.Workload; w.Keys > 1 {
			c := s
			c.Workload.Keys = w.Keys / 2
			cands = append(cands, c)
		}
		if w := s.Workload; w.Deletes > 0 {
			c := s
			c.Workload.Deletes = 0
			cands = append(cands, c)
		}
		for _, c := range cands {
			if try(c) {
				s, progress = c, true
			}
		}
	}
	return s, lastErr
}

// WriteScenario writes s as a YAML file that --scenario reads back.
func WriteScenario(path string, s Scenario) error {
	b, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Errorf("sim: encode scenario: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("sim: write scenario: %w", err)
	}
	return nil
}
