package sim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration that reads and writes as a string ("10s") in
// JSON and YAML, as the flags spell it.
type Duration time.Duration

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string, or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var ns int64
		if err := json.Unmarshal(b, &ns); err != nil {
			return fmt.Errorf("sim: duration %s: want a string such as \"10s\"", b)
		}
		*d = Duration(ns)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string such as "1m30s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// Workload is what the clients write. With no Rate and no write or delete
// events, the workload is the textbook one: a single update, from a random
// node, at time zero.
type Workload struct {
	// Rate is a stream of writes, per second of virtual time (Poisson
	// arrivals), each from a running node drawn at random. 0: no stream.
	Rate float64 `json:"rate,omitempty" yaml:"rate"`
	// Keys is the number of distinct keys the stream writes, uniformly.
	Keys int `json:"keys,omitempty" yaml:"keys"`
	// Deletes is the fraction of stream writes that delete a key already
	// written instead of writing a value.
	Deletes float64 `json:"deletes,omitempty" yaml:"deletes"`
	// ValueSize is the size in bytes of every written value.
	ValueSize int `json:"value_size,omitempty" yaml:"value_size"`
	// Start and Stop bound the stream in virtual time from the start of the
	// workload. Stop 0 means the scenario's Duration.
	Start Duration `json:"start,omitempty" yaml:"start"`
	Stop  Duration `json:"stop,omitempty" yaml:"stop"`
}

// Churn is membership change at a rate, each a Poisson process in virtual
// time, from the start of the workload until the scenario's Duration.
type Churn struct {
	// Crash is crashes per second, of running nodes drawn at random. A
	// crashed node keeps its store, as on disk.
	Crash float64 `json:"crash,omitempty" yaml:"crash"`
	// RestartAfter restarts each node crashed by Crash this long after its
	// crash. 0: crashed nodes stay down.
	RestartAfter Duration `json:"restart_after,omitempty" yaml:"restart_after"`
	// Join is fresh nodes (empty store, new name) joining per second.
	Join float64 `json:"join,omitempty" yaml:"join"`
	// Leave is graceful leaves per second, of running nodes drawn at random.
	Leave float64 `json:"leave,omitempty" yaml:"leave"`
}

func (c Churn) any() bool { return c.Crash > 0 || c.Join > 0 || c.Leave > 0 }

// Event is one thing that happens at a given virtual time, counted from the
// start of the workload (after the cluster formed, with the real sampler).
// Exactly one of its actions is set.
type Event struct {
	At Duration `json:"at" yaml:"at"`

	// Partition splits the nodes into groups that cannot reach each other,
	// until Heal. It replaces any earlier partition.
	Partition *PartitionSpec `json:"partition,omitempty" yaml:"partition,omitempty"`
	// Heal ends the partition and every one-way cut.
	Heal bool `json:"heal,omitempty" yaml:"heal,omitempty"`
	// Cut drops every message from the From nodes to the To nodes (one
	// direction: an asymmetric link), until Mend or Heal.
	Cut *LinkSpec `json:"cut,omitempty" yaml:"cut,omitempty"`
	// Mend restores the links Cut dropped, From to To.
	Mend *LinkSpec `json:"mend,omitempty" yaml:"mend,omitempty"`
	// Loss changes the message loss probability from now on.
	Loss *float64 `json:"loss,omitempty" yaml:"loss,omitempty"`

	// Crash stops running nodes; their stores are kept.
	Crash *NodeSet `json:"crash,omitempty" yaml:"crash,omitempty"`
	// Restart boots crashed (or left) nodes again on their stores; with the
	// real sampler they join through a running node.
	Restart *NodeSet `json:"restart,omitempty" yaml:"restart,omitempty"`
	// Join adds this many fresh nodes, with empty stores.
	Join int `json:"join,omitempty" yaml:"join,omitempty"`
	// Leave makes running nodes announce a graceful departure and stop
	// a second later.
	Leave *NodeSet `json:"leave,omitempty" yaml:"leave,omitempty"`

	// Write and Delete are single client operations.
	Write  *WriteSpec `json:"write,omitempty" yaml:"write,omitempty"`
	Delete *WriteSpec `json:"delete,omitempty" yaml:"delete,omitempty"`

	// Clock sets the wall clock of the nodes picked: from now on each reads
	// virtual time plus Offset plus Drift times the time since Epoch. An
	// offset of 0 and no drift fixes a clock.
	Clock *ClockSpec `json:"clock,omitempty" yaml:"clock,omitempty"`

	// Storage sets the picked nodes' disk faults to exactly what it says
	// (an empty spec clears them): writes refused for lack of space or by
	// an I/O error, a failing sync (the node stops: fail-stop), a slower
	// sync. Named nodes and a fraction of 1 include nodes that are down.
	Storage *StorageSpec `json:"storage,omitempty" yaml:"storage,omitempty"`
}

// StorageSpec is a storage fault.
type StorageSpec struct {
	Nodes NodeSet `json:"nodes" yaml:"nodes"`
	// Full refuses every Apply as out of space (store.ErrNoSpace).
	Full bool `json:"full,omitempty" yaml:"full,omitempty"`
	// ApplyError refuses every Apply with an I/O error.
	ApplyError bool `json:"apply_error,omitempty" yaml:"apply_error,omitempty"`
	// SyncError fails every sync: the node stops at its next one, losing
	// what was not durable, and stays down until restarted.
	SyncError bool `json:"sync_error,omitempty" yaml:"sync_error,omitempty"`
	// SyncDelay, if set, is the nodes' new sync duration.
	SyncDelay *Duration `json:"sync_delay,omitempty" yaml:"sync_delay,omitempty"`
}

// ClockSpec is a clock fault: how far the picked nodes' clocks are off.
type ClockSpec struct {
	Nodes  NodeSet  `json:"nodes" yaml:"nodes"`
	Offset Duration `json:"offset,omitempty" yaml:"offset,omitempty"`
	// Drift is the clock's rate error, dimensionless (1e-4 gains 360 ms
	// an hour).
	Drift float64 `json:"drift,omitempty" yaml:"drift,omitempty"`
}

// PartitionSpec names the sides of a partition: explicit groups, or a
// random fraction of the running nodes against the rest.
type PartitionSpec struct {
	// Groups lists the nodes of each side. Nodes in no group, fresh joiners
	// included, form one more side.
	Groups []NodeList `json:"groups,omitempty" yaml:"groups,omitempty"`
	// Fraction puts this fraction of the running nodes, drawn at random, on
	// one side and the rest on the other.
	Fraction float64 `json:"fraction,omitempty" yaml:"fraction,omitempty"`
}

// LinkSpec is a set of directed links: from every From node to every To
// node.
type LinkSpec struct {
	From NodeList `json:"from" yaml:"from"`
	To   NodeList `json:"to" yaml:"to"`
}

// WriteSpec is one client write or delete.
type WriteSpec struct {
	// Node is where the client writes; empty: a running node at random.
	Node  string `json:"node,omitempty" yaml:"node"`
	Key   string `json:"key" yaml:"key"`
	Value string `json:"value,omitempty" yaml:"value"`
}

// NodeList is a list of node names; an entry "nA..nB" stands for every node
// from nA to nB.
type NodeList []string

// expand returns the names the list stands for.
func (l NodeList) expand() ([]string, error) {
	var out []string
	for _, e := range l {
		lo, hi, ok := strings.Cut(e, "..")
		if !ok {
			out = append(out, e)
			continue
		}
		a, err1 := nodeIndex(lo)
		b, err2 := nodeIndex(hi)
		if err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("node range %q: want nA..nB with A <= B", e)
		}
		for i := a; i <= b; i++ {
			out = append(out, nodeName(i))
		}
	}
	return out, nil
}

func nodeName(i int) string { return "n" + strconv.Itoa(i) }

func nodeIndex(name string) (int, error) {
	if !strings.HasPrefix(name, "n") {
		return 0, fmt.Errorf("node name %q: want n<number>", name)
	}
	i, err := strconv.Atoi(name[1:])
	if err != nil || i < 0 {
		return 0, fmt.Errorf("node name %q: want n<number>", name)
	}
	return i, nil
}

// NodeSet picks nodes: by name (a YAML list, ranges allowed as in
// NodeList), or at random among the eligible ones ({count: 3} or
// {fraction: 0.1}).
type NodeSet struct {
	Names    NodeList `json:"names,omitempty" yaml:"names,omitempty"`
	Count    int      `json:"count,omitempty" yaml:"count,omitempty"`
	Fraction float64  `json:"fraction,omitempty" yaml:"fraction,omitempty"`
}

// UnmarshalYAML reads a list of names or a mapping with names, count or
// fraction; unknown keys are an error.
func (s *NodeSet) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode || n.Kind == yaml.ScalarNode {
		var l NodeList
		if n.Kind == yaml.ScalarNode {
			l = NodeList{n.Value}
		} else if err := n.Decode(&l); err != nil {
			return err
		}
		*s = NodeSet{Names: l}
		return nil
	}
	if err := strictKeys(n, "names", "count", "fraction"); err != nil {
		return err
	}
	type plain NodeSet
	return n.Decode((*plain)(s))
}

// strictKeys fails on mapping keys other than those allowed: a custom
// unmarshaler's Decode does not inherit the decoder's KnownFields.
func strictKeys(n *yaml.Node, allowed ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping", n.Line)
	}
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i].Value
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return fmt.Errorf("line %d: field %s not found (want %s)", n.Content[i].Line, k, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func (s *NodeSet) validate() error {
	if _, err := s.Names.expand(); err != nil {
		return err
	}
	set := 0
	if len(s.Names) > 0 {
		set++
	}
	if s.Count > 0 {
		set++
	}
	if s.Fraction > 0 {
		set++
	}
	if set != 1 || s.Count < 0 || s.Fraction < 0 || s.Fraction > 1 {
		return fmt.Errorf("node set: want names, a count > 0 or a fraction in (0, 1]")
	}
	return nil
}

func (e *Event) validate() error {
	actions := 0
	count := func(set bool) {
		if set {
			actions++
		}
	}
	count(e.Partition != nil)
	count(e.Heal)
	count(e.Cut != nil)
	count(e.Mend != nil)
	count(e.Loss != nil)
	count(e.Crash != nil)
	count(e.Restart != nil)
	count(e.Join > 0)
	count(e.Leave != nil)
	count(e.Write != nil)
	count(e.Delete != nil)
	count(e.Clock != nil)
	count(e.Storage != nil)
	if actions != 1 {
		return fmt.Errorf("sim: event at %v: want exactly one action, got %d", e.At, actions)
	}
	if e.At < 0 {
		return fmt.Errorf("sim: event at %v: negative time", e.At)
	}
	names := func(l NodeList) error {
		ns, err := l.expand()
		if err != nil {
			return err
		}
		for _, n := range ns {
			if _, err := nodeIndex(n); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	switch {
	case e.Partition != nil:
		p := e.Partition
		if (len(p.Groups) > 0) == (p.Fraction > 0) || p.Fraction < 0 || p.Fraction >= 1 {
			err = fmt.Errorf("partition: want groups, or a fraction in (0, 1)")
		}
		for _, g := range p.Groups {
			if err == nil {
				err = names(g)
			}
		}
	case e.Cut != nil || e.Mend != nil:
		l := e.Cut
		if l == nil {
			l = e.Mend
		}
		if len(l.From) == 0 || len(l.To) == 0 {
			err = fmt.Errorf("cut and mend need from and to")
		} else if err = names(l.From); err == nil {
			err = names(l.To)
		}
	case e.Loss != nil:
		if *e.Loss < 0 || *e.Loss >= 1 {
			err = fmt.Errorf("loss %v: want a probability in [0, 1)", *e.Loss)
		}
	case e.Crash != nil:
		err = e.Crash.validate()
	case e.Restart != nil:
		err = e.Restart.validate()
	case e.Leave != nil:
		err = e.Leave.validate()
	case e.Clock != nil:
		err = e.Clock.Nodes.validate()
		if err == nil && (e.Clock.Drift <= -0.5 || e.Clock.Drift >= 0.5) {
			err = fmt.Errorf("clock drift %v: want a rate error in (-0.5, 0.5)", e.Clock.Drift)
		}
	case e.Storage != nil:
		err = e.Storage.Nodes.validate()
		if err == nil && e.Storage.SyncDelay != nil && *e.Storage.SyncDelay < 0 {
			err = fmt.Errorf("storage sync_delay %v: want >= 0", *e.Storage.SyncDelay)
		}
	case e.Write != nil || e.Delete != nil:
		w := e.Write
		if w == nil {
			w = e.Delete
		}
		if w.Key == "" {
			err = fmt.Errorf("write and delete need a key")
		} else if w.Node != "" {
			err = names(NodeList{w.Node})
		}
	}
	if err != nil {
		return fmt.Errorf("sim: event at %v: %w", e.At, err)
	}
	return nil
}

// describe is the event as a line of a trace.
func (e *Event) describe() string {
	set := func(s *NodeSet) string {
		switch {
		case len(s.Names) > 0:
			return strings.Join(s.Names, ",")
		case s.Count > 0:
			return fmt.Sprintf("%d random", s.Count)
		}
		return fmt.Sprintf("%g of the nodes", s.Fraction)
	}
	switch {
	case e.Partition != nil:
		if e.Partition.Fraction > 0 {
			return fmt.Sprintf("partition %g of the nodes from the rest", e.Partition.Fraction)
		}
		return fmt.Sprintf("partition %v", e.Partition.Groups)
	case e.Heal:
		return "heal"
	case e.Cut != nil:
		return fmt.Sprintf("cut %v -> %v", e.Cut.From, e.Cut.To)
	case e.Mend != nil:
		return fmt.Sprintf("mend %v -> %v", e.Mend.From, e.Mend.To)
	case e.Loss != nil:
		return fmt.Sprintf("loss %g", *e.Loss)
	case e.Crash != nil:
		return "crash " + set(e.Crash)
	case e.Restart != nil:
		return "restart " + set(e.Restart)
	case e.Join > 0:
		return fmt.Sprintf("join %d", e.Join)
	case e.Leave != nil:
		return "leave " + set(e.Leave)
	case e.Clock != nil:
		return fmt.Sprintf("clock %s offset %v drift %g", set(&e.Clock.Nodes), e.Clock.Offset, e.Clock.Drift)
	case e.Storage != nil:
		st := e.Storage
		d := ""
		if st.SyncDelay != nil {
			d = fmt.Sprintf(" sync_delay %v", *st.SyncDelay)
		}
		return fmt.Sprintf("storage %s full=%v apply_error=%v sync_error=%v%s", set(&st.Nodes), st.Full, st.ApplyError, st.SyncError, d)
	case e.Write != nil:
		return "write " + e.Write.Key
	case e.Delete != nil:
		return "delete " + e.Delete.Key
	}
	return "?"
}
