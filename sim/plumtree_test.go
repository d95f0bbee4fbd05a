package sim

import (
	"reflect"
	"testing"
	"time"
)

// The broadcast tree with anti-entropy behind it, on the real membership
// component with 2% message loss and writes from random nodes: every
// update reaches every node (residue 0), and the same seed gives the same
// run.
func TestPlumtreeBackedByAntiEntropy(t *testing.T) {
	s := DefaultScenario()
	s.Nodes = 40
	if testing.Short() {
		s.Nodes = 15
	}
	s.Model, s.Sampler, s.Mechanism = "async", "real", "plumtree+anti-entropy"
	s.Loss = 0.02
	s.Cycle = Duration(time.Second)
	s.Latency = Latency{Dist: "constant", Mean: 20 * time.Millisecond}
	s.Duration = Duration(15 * time.Second)
	s.Drain = Duration(time.Minute)
	s.Workload = Workload{Rate: 10, Keys: 50, Stop: Duration(10 * time.Second)}
	a, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := a.Runs[0]
	t.Logf("plumtree+anti-entropy, %d nodes, 2%% loss: %d updates, residue %.4f, p50 %.3f s, max %.3f s, %.1f messages per update",
		s.Nodes, r.Updates, a.Residue, r.P50, r.Max, float64(r.Messages)/float64(r.Updates))
	if r.Updates < 50 {
		t.Fatalf("workload made only %d updates", r.Updates)
	}
	if a.Residue != 0 || a.Converged != 1 {
		t.Fatalf("residue %.4f, converged %.2f: anti-entropy should repair what the tree missed", a.Residue, a.Converged)
	}
	b, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Runs, b.Runs) {
		t.Fatalf("same seed, different runs:\n%+v\n%+v", a.Runs, b.Runs)
	}
}

// The oracle sampler drives the tree too (the scale runs of
// docs/SIMULATION.md): one update from one node reaches all 500 nodes.
func TestPlumtreeOracleSampler(t *testing.T) {
	s := DefaultScenario()
	s.Nodes = 500
	s.Model, s.Mechanism = "async", "plumtree"
	a, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Residue != 0 {
		t.Fatalf("residue %.4f", a.Residue)
	}
}
