package sim

import (
	"testing"
	"time"
)

// Issue 4's acceptance run: 1,000 nodes, 1% message loss, a stream of
// writes from random nodes. Rumor mongering backed by anti-entropy delivers
// every update to every node; rumor mongering alone leaves a residue, which
// the report states.
func TestRumorBackedByAntiEntropyDeliversEverything(t *testing.T) {
	skipHeavyUnderRace(t)
	base := DefaultScenario()
	base.Nodes = 1000
	base.Model = "async"
	base.Loss = 0.01
	base.Interest = "feedback-counter"
	base.K = 1 // a weak rule, so that rumors alone visibly miss nodes
	base.Cycle = Duration(time.Second)
	base.Duration = Duration(20 * time.Second)
	base.Drain = Duration(2 * time.Minute)
	base.Workload = Workload{Rate: 2, Keys: 1000, Stop: Duration(10 * time.Second)}

	alone := base
	alone.Mechanism = "rumor"
	ra, err := Run(alone, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rumor alone: %d updates, residue %.4f, converged %.0f%%", ra.Runs[0].Updates, ra.Residue, 100*ra.Converged)
	if ra.Runs[0].Updates < 5 {
		t.Fatalf("workload made only %d updates", ra.Runs[0].Updates)
	}
	if ra.Residue <= 0 || ra.Converged != 0 {
		t.Fatalf("rumor alone with k=1 should leave a residue: %.4f, converged %.2f", ra.Residue, ra.Converged)
	}

	backed := base
	backed.Mechanism = "rumor+anti-entropy"
	rb, err := Run(backed, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rumor+anti-entropy: %d updates, residue %.4f, converged %.0f%%, t_last %.1f s", rb.Runs[0].Updates, rb.Residue, 100*rb.Converged, rb.TLast)
	if rb.Residue != 0 || rb.Converged != 1 {
		t.Fatalf("rumor backed by anti-entropy left residue %.4f (converged %.2f)", rb.Residue, rb.Converged)
	}
}
