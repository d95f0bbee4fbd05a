package sim

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The scenarios in examples/sim run here at small sizes, and their outputs
// are checked for the values each example is about.
func TestExamples(t *testing.T) {
	checks := map[string]struct {
		shrink func(*Scenario)
		check  func(t *testing.T, r *Report)
	}{
		"textbook.yaml": {
			shrink: func(s *Scenario) { s.Nodes, s.Runs = 300, 4 },
			check: func(t *testing.T, r *Report) {
				// Demers et al., Table 1 (feedback, counter, k=2): residue
				// 0.037, traffic 3.3, t_last 17.
				expect(t, "residue", r.Residue, 0.002, 0.15)
				expect(t, "traffic", r.Traffic, 1.5, 4.5)
				expect(t, "t_last", r.TLast, 8, 30)
				expect(t, "t_avg", r.TAvg, 3, r.TLast)
				expect(t, "updates", r.Updates, 1, 1)
				expect(t, "p50", r.Latency.P50, 1, r.Latency.P99)
			},
		},
		"byzantine.yaml": {
			shrink: func(s *Scenario) { s.Duration = sec(30) },
			check: func(t *testing.T, r *Report) {
				// Two accusers: no false death, both quarantined by every
				// honest node, nobody else.
				expect(t, "residue", r.Residue, 0, 0)
				expect(t, "false_detections", r.FalseDetections, 0, 0)
				expect(t, "quarantined byzantine pairs", r.Quarantined.Byzantine, 36, 36)
				expect(t, "quarantined false pairs", r.Quarantined.False, 0, 0)
				expect(t, "quarantined by all (s)", r.Quarantined.All, 0, 60)
			},
		},
		"write-stream.yaml": {
			shrink: func(s *Scenario) { s.Nodes, s.Duration = 30, sec(10) },
			check: func(t *testing.T, r *Report) {
				// Direct mail retries what the 1% loss drops.
				expect(t, "updates", r.Updates, 150, 250)
				expect(t, "residue", r.Residue, 0, 0)
				expect(t, "converged", r.Converged, 1, 1)
				expect(t, "convergence", r.Convergence, 9, 15)
				expect(t, "latency p50 (s)", r.Latency.P50, 0.001, 0.05)
				expect(t, "false detections", r.FalseDetections, 0, 0)
				expect(t, "messages per update", r.MessagesPerUpdate, 29, 1000)
			},
		},
		"partition-heal.yaml": {
			shrink: func(s *Scenario) { s.Nodes = 20 },
			check: func(t *testing.T, r *Report) {
				expect(t, "residue", r.Residue, 0, 0)
				expect(t, "converged", r.Converged, 1, 1)
				// Writes made as the partition opens wait for the heal.
				expect(t, "max latency (s)", r.Latency.Max, 15, 21)
				expect(t, "p50 (s)", r.Latency.P50, 0, 1)
				expect(t, "convergence (s)", r.Convergence, 30, 46)
				expect(t, "false detections", r.FalseDetections, 0, 0)
			},
		},
		"partition-anti-entropy.yaml": {
			shrink: func(s *Scenario) { s.Nodes = 20 },
			check: func(t *testing.T, r *Report) {
				// The sides declare each other dead, dropping the outboxes;
				// anti-entropy alone can repair what crossed no link.
				expect(t, "false detections", r.FalseDetections, 20, 400)
				expect(t, "residue", r.Residue, 0, 0)
				expect(t, "converged", r.Converged, 1, 1)
				expect(t, "convergence (s)", r.Convergence, 35, 60)
				expect(t, "max latency (s)", r.Latency.Max, 15, 40)
			},
		},
		"churn.yaml": {
			shrink: func(s *Scenario) { s.Nodes, s.Duration = 20, sec(30) },
			check: func(t *testing.T, r *Report) {
				run := r.Runs[0]
				expect(t, "crashes", float64(run.Crashes), 4, 20)
				expect(t, "restarts", float64(run.Restarts), 3, float64(run.Crashes))
				expect(t, "updates", r.Updates, 200, 400)
				// Fresh nodes start empty and only anti-entropy would fill
				// them in; restarted ones miss what rumors they missed.
				expect(t, "residue", r.Residue, 0, 0.3)
				expect(t, "live", float64(run.Live), 10, 30)
				expect(t, "p50 (s)", r.Latency.P50, 0, 0.1)
			},
		},
	}
	files, err := filepath.Glob("../examples/sim/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		c, ok := checks[name]
		if !ok {
			t.Errorf("%s: no check for this example; add one", name)
			continue
		}
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			s, err := LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			c.shrink(&s)
			rep, err := Run(s, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, rep)
			var b bytes.Buffer
			if err := WriteSummary(&b, rep); err != nil {
				t.Fatal(err)
			}
			if err := WriteCSV(&b, rep); err != nil {
				t.Fatal(err)
			}
			if _, err := json.Marshal(rep); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", b.String()[:strings.Index(b.String(), "run,seed")])
		})
	}
}

func expect(t *testing.T, what string, got, lo, hi float64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %v, want within [%v, %v]", what, got, lo, hi)
	}
}

func TestLoadScenarioRejectsUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"top":        "nodes: 10\nnodez: 3\n",
		"workload":   "workload: {rate: 1, keyz: 3}\n",
		"event":      "events:\n  - at: 1s\n    partion: {fraction: 0.5}\n",
		"node set":   "events:\n  - at: 1s\n    crash: {cout: 3}\n",
		"two action": "events:\n  - at: 1s\n    heal: true\n    join: 2\n",
		"duration":   "duration: 10 seconds\n",
	} {
		path := filepath.Join(dir, "s.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadScenario(path); err == nil {
			t.Errorf("%s: %q accepted", name, text)
		}
	}
}

func TestDurationsAreStringsInJSON(t *testing.T) {
	s := DefaultScenario()
	s.Events = []Event{{At: sec(1.5), Heal: true}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"duration":"10m0s"`, `"cycle":"1s"`, `"at":"1.5s"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var back Scenario
	if err := json.Unmarshal(b, &back); err != nil || back.Duration != Duration(10*time.Minute) || back.Events[0].At != sec(1.5) {
		t.Fatalf("round trip: %v, %+v", err, back)
	}
}
