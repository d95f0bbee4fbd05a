package sim

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runJSON(t *testing.T, s Scenario) []byte {
	t.Helper()
	rep, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSameSeedSameBytes(t *testing.T) {
	s := DefaultScenario()
	s.Nodes, s.Runs = 300, 3
	s.Loss = 0.05
	a, b := runJSON(t, s), runJSON(t, s)
	if !bytes.Equal(a, b) {
		t.Fatal("same scenario and seed gave different output")
	}
	s.Seed = 2
	if c := runJSON(t, s); bytes.Equal(a, c) {
		t.Fatal("different seeds gave identical output")
	}
	s.Model, s.Seed = "async", 1
	if err := s.Latency.UnmarshalJSON([]byte(`"lognormal:10ms,0.5"`)); err != nil {
		t.Fatal(err)
	}
	if a, b := runJSON(t, s), runJSON(t, s); !bytes.Equal(a, b) {
		t.Fatal("async model: same seed gave different output")
	}
	// Faults, churn, a write stream and the real sampler, CSV included.
	f, err := LoadScenario("../examples/sim/churn.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.Nodes, f.Duration, f.Duplicate, f.Loss = 15, Duration(15*time.Second), 0.05, 0.02
	f.Events = append(f.Events, Event{At: Duration(2 * time.Second), Partition: &PartitionSpec{Fraction: 0.3}}, Event{At: Duration(6 * time.Second), Heal: true})
	out := func(seed uint64) string {
		f.Seed = seed
		var b bytes.Buffer
		b.Write(runJSON(t, f))
		rep, err := Run(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteCSV(&b, rep); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if a, b := out(1), out(1); a != b {
		t.Fatal("churn scenario: same seed gave different output")
	}
	if a, c := out(1), out(2); a == c {
		t.Fatal("churn scenario: different seeds gave identical output")
	}
}

// The feedback-coin variant has an analytic residue: s = e^{-(k+1)(1-s)}
// (Demers et al. 1987, §1.4). The simulation must land near it.
func TestFeedbackCoinMatchesAnalyticResidue(t *testing.T) {
	skipHeavyUnderRace(t)
	for k := 1; k <= 3; k++ {
		s := DefaultScenario()
		s.Interest, s.K, s.Runs = "feedback-coin", k, 10
		rep, err := Run(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := solveResidue(float64(k + 1))
		if math.Abs(rep.Residue-want) > 0.25*want+0.002 {
			t.Errorf("k=%d: residue %.4f, analytic %.4f", k, rep.Residue, want)
		}
		// And the push relation s ≈ e^{-traffic}.
		if e := math.Exp(-rep.Traffic); math.Abs(rep.Residue-e) > 0.25*e+0.002 {
			t.Errorf("k=%d: residue %.4f vs e^-traffic %.4f", k, rep.Residue, e)
		}
	}
}

// solveResidue solves s = e^{-m(1-s)} for the root below 1 by iteration.
func solveResidue(m float64) float64 {
	s := 0.0
	for range 200 {
		s = math.Exp(-m * (1 - s))
	}
	return s
}

func TestBlindK1BarelySpreads(t *testing.T) {
	skipHeavyUnderRace(t)
	s := DefaultScenario()
	s.Interest, s.K, s.Runs = "blind-counter", 1, 5
	rep, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Each node passes the rumor on once: a chain, not an epidemic.
	if rep.Residue < 0.9 {
		t.Fatalf("blind k=1 residue %.3f, expected most nodes unreached", rep.Residue)
	}
}

func TestValidateRejectsBadScenarios(t *testing.T) {
	for name, mod := range map[string]func(*Scenario){
		"nodes":     func(s *Scenario) { s.Nodes = 1 },
		"model":     func(s *Scenario) { s.Model = "quantum" },
		"interest":  func(s *Scenario) { s.Interest = "feedback" },
		"direction": func(s *Scenario) { s.Direction = "up" },
		"mechanism": func(s *Scenario) { s.Mechanism = "smoke-signals" },
		"loss":      func(s *Scenario) { s.Loss = 1.5 },
		"k":         func(s *Scenario) { s.K = 0 },
		"fanout":    func(s *Scenario) { s.Fanout = 0 },
		"sampler":   func(s *Scenario) { s.Sampler = "psychic" },
	} {
		s := DefaultScenario()
		mod(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v should name the flag", name, err)
		}
	}
	if _, err := ParseLatency("lognormal:10ms"); err == nil {
		t.Error("latency without sigma accepted")
	}
}

func TestOutputsCSVAndPlot(t *testing.T) {
	s := DefaultScenario()
	s.Nodes, s.Runs = 200, 2
	rep, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if lines[0] != "run,seed,step,susceptible,infective,removed,time,live,missing,messages,bytes" || len(lines) < 10 {
		t.Fatalf("csv: %q...", lines[:min(3, len(lines))])
	}
	// Every row accounts for every node.
	for _, l := range lines[1:] {
		var run, seed, step, sus, inf, rem int
		if _, err := fmtSscanf(l, &run, &seed, &step, &sus, &inf, &rem); err != nil || sus+inf+rem != 200 {
			t.Fatalf("row %q does not sum to 200 nodes", l)
		}
	}
	for _, name := range []string{"p.svg", "p.png"} {
		path := filepath.Join(t.TempDir(), name)
		if err := WritePlot(path, rep); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path); err != nil || st.Size() < 1000 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := WritePlot(filepath.Join(t.TempDir(), "p.gif"), rep); err == nil {
		t.Fatal("gif accepted")
	}
}

func TestSignedNeedsRealSampler(t *testing.T) {
	s := DefaultScenario()
	s.Nodes, s.Signed = 10, true
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--signed needs --sampler real") {
		t.Fatalf("signed scenario with the oracle sampler: err %v", err)
	}
	s.Sampler, s.Model, s.Mechanism = "real", "async", "rumor+anti-entropy"
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Residue != 0 || rep.Converged != 1 {
		t.Fatalf("signed run: residue %v, converged %v", rep.Residue, rep.Converged)
	}
}
