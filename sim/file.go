package sim

import (
	"bytes"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// LoadScenario reads a scenario from a YAML file whose keys are the flag
// names of `hearsay sim` (nodes, model, mechanism, ...) and, for what flags
// do not cover, the workload, churn and events sections (see Scenario and
// the files in examples/sim). Keys it does not know are an error, so a typo
// does not silently fall back to a default. Unset keys keep
// DefaultScenario's values.
func LoadScenario(path string) (Scenario, error) {
	s := DefaultScenario()
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("sim: scenario: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("sim: scenario %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("sim: scenario %s: %w", path, err)
	}
	return s, nil
}

// Override copies the field named by a `hearsay sim` flag from o into s:
// how flags given on the command line win over a scenario file.
func (s *Scenario) Override(flag string, o Scenario) {
	switch flag {
	case "nodes":
		s.Nodes = o.Nodes
	case "model":
		s.Model = o.Model
	case "mechanism":
		s.Mechanism = o.Mechanism
	case "direction":
		s.Direction = o.Direction
	case "interest":
		s.Interest = o.Interest
	case "k":
		s.K = o.K
	case "fanout":
		s.Fanout = o.Fanout
	case "loss":
		s.Loss = o.Loss
	case "latency":
		s.Latency = o.Latency
	case "sampler":
		s.Sampler = o.Sampler
	case "seed":
		s.Seed = o.Seed
	case "runs":
		s.Runs = o.Runs
	case "duration":
		s.Duration = o.Duration
	case "cycle":
		s.Cycle = o.Cycle
	case "duplicate":
		s.Duplicate = o.Duplicate
	case "bandwidth":
		s.Bandwidth = o.Bandwidth
	case "suspicion":
		s.Suspicion = o.Suspicion
	case "drain":
		s.Drain = o.Drain
	case "mail-window":
		s.MailWindow = o.MailWindow
	case "tree-fanout":
		s.TreeFanout = o.TreeFanout
	case "lazy-fanout":
		s.LazyFanout = o.LazyFanout
	case "eager-window":
		s.EagerWindow = o.EagerWindow
	case "ihave-window":
		s.IHaveWindow = o.IHaveWindow
	case "graft-timeout":
		s.GraftTimeout = o.GraftTimeout
	case "prune-after":
		s.PruneAfter = o.PruneAfter
	case "write-rate":
		s.Workload.Rate = o.Workload.Rate
	case "keys":
		s.Workload.Keys = o.Workload.Keys
	case "deletes":
		s.Workload.Deletes = o.Workload.Deletes
	case "byzantine":
		s.Byzantine = o.Byzantine
	case "no-defences":
		s.NoDefences = o.NoDefences
	case "signed":
		s.Signed = o.Signed
	}
}

// UnmarshalYAML reads the flag string form of a latency.
func (l *Latency) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseLatency(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// MarshalYAML writes l in its flag string form.
func (l Latency) MarshalYAML() (any, error) { return l.String(), nil }
