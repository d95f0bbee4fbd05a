package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSimJSONCSVPlotAndScenario(t *testing.T) {
	dir := t.TempDir()
	csvPath, plotPath := filepath.Join(dir, "s.csv"), filepath.Join(dir, "s.svg")
	args := []string{"sim", "--nodes", "100", "--model", "async", "--sampler", "real", "--mechanism", "direct-mail+rumor",
		"--loss", "0.01", "--write-rate", "20", "--deletes", "0.1", "--duration", "5s", "--cycle", "200ms",
		"--seed", "3", "--json", "--csv", csvPath, "--plot", plotPath}
	r := cli(t, nil, "", args...).want(t, 0)
	var rep struct {
		Residue, Traffic, TAvg, TLast float64
		Latency                       map[string]float64
		Converged                     float64
		Updates                       float64
		MessagesPerUpdate             float64 `json:"messages_per_update"`
		Scenario                      map[string]any
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if rep.Updates < 50 || rep.Converged != 1 || rep.Residue != 0 || rep.Latency["p99"] <= 0 || rep.MessagesPerUpdate < 99 {
		t.Fatalf("implausible report: %+v", rep)
	}
	if rep.Scenario["duration"] != "5s" || rep.Scenario["cycle"] != "200ms" {
		t.Errorf("durations in JSON: %v, %v; want strings", rep.Scenario["duration"], rep.Scenario["cycle"])
	}
	csv, err := os.ReadFile(csvPath)
	if err != nil || !strings.HasPrefix(string(csv), "run,seed,step,susceptible,infective,removed,") {
		t.Fatalf("--csv: %v %.80q", err, csv)
	}
	if st, err := os.Stat(plotPath); err != nil || st.Size() < 1000 {
		t.Fatalf("--plot: %v", err)
	}
	// Same seed, same bytes.
	if again := cli(t, nil, "", args...).want(t, 0); again.stdout != r.stdout {
		t.Fatal("same arguments gave different output")
	}

	// A scenario file, with flags overriding it.
	path := filepath.Join(dir, "p.yaml")
	yaml := "nodes: 500\nmodel: async\nsampler: real\nmechanism: direct-mail\nsuspicion: 10m\nduration: 10s\n" +
		"events:\n  - at: 1s\n    partition: {groups: [[n0..n4]]}\n  - at: 2s\n    write: {node: n0, key: a}\n  - at: 6s\n    heal: true\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cli(t, nil, "", "sim", "--scenario", path, "--nodes", "10").want(t, 0)
	for _, want := range []string{"10 nodes", "residue   0.0000", "latency   p50 4.0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.stdout)
		}
	}
	if err := os.WriteFile(path, []byte("nodes: 10\nloss_rate: 0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, nil, "", "sim", "--scenario", path).want(t, 2)
	cli(t, nil, "", "sim", "--mechanism", "direct-mail").want(t, 2) // needs the real sampler
}
