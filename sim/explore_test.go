package sim

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var (
	exploreSeeds = flag.Int("explore", 200, "seeds TestExplore runs (make soak runs more)")
	exploreFirst = flag.Uint64("explore-first", 1, "first seed TestExplore runs")
)

// TestExplore runs the fixed budget of random scenarios CI runs, checking
// every invariant on each; a failure prints the reproduction and the
// scenario file, shrunk.
func TestExplore(t *testing.T) {
	skipHeavyUnderRace(t)
	n := *exploreSeeds
	if testing.Short() || (raceDetector && !flagSet("explore")) {
		// make test runs the full budget once more without the race
		// detector, which slows the simulator about tenfold.
		n = min(n, 20)
	}
	dir := t.TempDir()
	start := time.Now()
	rep, err := Explore(ExploreOptions{First: *exploreFirst, Seeds: n, Dir: dir, ShrinkRuns: 40})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("explored %d seeds in %v: %d writes (%d acknowledged, %d unacknowledged), %d crashes, %d fail-stops, %.0f s virtual; replicas identical at most %.1f s after the last fault healed (bound %.0f s)",
		rep.Seeds, time.Since(start).Round(time.Millisecond), rep.Writes, rep.Acknowledged, rep.Unacked, rep.Crashes, rep.FailStops, rep.Virtual, rep.MaxSettled, rep.SettleBound)
	for _, f := range rep.Failures {
		t.Errorf("seed %d failed; reproduce: %s (scenario %s)\n%s", f.Seed, f.Reproduce(), f.File, f.Message)
		if f.Shrunk != nil {
			b, _ := os.ReadFile(f.ShrunkFile)
			t.Logf("shrunk to %d nodes, %d events, still failing:\n%s\n%s", f.Shrunk.Nodes, len(f.Shrunk.Events), f.ShrunkErr, b)
		}
	}
}

// TestRandomScenarioRoundTrips checks that a drawn scenario written to a
// file reads back the same, so that the file reproduces the run.
func TestRandomScenarioRoundTrips(t *testing.T) {
	for seed := range uint64(20) {
		s := RandomScenario(seed)
		if err := s.Validate(); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		p := filepath.Join(t.TempDir(), "s.yaml")
		if err := WriteScenario(p, s); err != nil {
			t.Fatal(err)
		}
		got, err := LoadScenario(p)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !reflect.DeepEqual(got, s) {
			b, _ := os.ReadFile(p)
			t.Fatalf("seed %d: read back\n%+v\nwant\n%+v\nfile:\n%s", seed, got, s, b)
		}
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
