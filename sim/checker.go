package sim

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hearsaydb/hearsay/store"
)

// The checker follows Jepsen's separation: the generator (the scenario's
// workload) and the nemesis (its faults) produce a history of client
// operations with their outcomes; Check reads only that history and the
// replicas' final states, never the simulator's internals.

// Outcome is what a client learned of its operation.
type Outcome string

// Outcomes, as Jepsen names them.
const (
	// OK: the write was acknowledged (durable on its node).
	OK Outcome = "ok"
	// Fail: the write was refused (clock offset, storage fault): it did
	// not happen.
	Fail Outcome = "fail"
	// Info: the client never learned (the node crashed before the write
	// was durable): it may or may not have happened.
	Info Outcome = "info"
)

// Op is one client operation of a run's history.
type Op struct {
	Index  int    `json:"index" yaml:"index"`
	Node   string `json:"node" yaml:"node"`
	Key    string `json:"key" yaml:"key"`
	Value  string `json:"value,omitempty" yaml:"value,omitempty"`
	Delete bool   `json:"delete,omitempty" yaml:"delete,omitempty"`
	// Version is the version the node gave the write (zero if refused).
	Version store.Version `json:"version" yaml:"version"`
	// Invoked and Completed are virtual times since the start of the
	// workload.
	Invoked   Duration `json:"invoked" yaml:"invoked"`
	Completed Duration `json:"completed" yaml:"completed"`
	Outcome   Outcome  `json:"outcome" yaml:"outcome"`
	Err       string   `json:"err,omitempty" yaml:"err,omitempty"`
}

// String formats the op as a line of a trace.
func (o Op) String() string {
	what := fmt.Sprintf("put %s=%.24q", o.Key, o.Value)
	if o.Delete {
		what = "del " + o.Key
	}
	s := fmt.Sprintf("#%d %v..%v %s %s -> %s", o.Index, o.Invoked, o.Completed, o.Node, what, o.Outcome)
	if o.Outcome != Fail {
		s += " " + o.Version.String()
	}
	if o.Err != "" {
		s += " (" + o.Err + ")"
	}
	return s
}

// Replica is one running node's final state: its records, tombstones
// included, and the members it sees alive.
type Replica struct {
	Node    string
	Records map[string]store.Record
	Alive   []string
}

// CheckOptions says which invariants a run's end state must meet besides
// those that always hold.
type CheckOptions struct {
	// Converged: every fault has healed and the run had its settling time,
	// so all running replicas must be identical and hold, for each key,
	// the highest version written.
	Converged bool
	// Members: the membership must agree: every running node sees exactly
	// the running nodes alive.
	Members bool
}

// Invariants, as Violation.Invariant names them.
const (
	InvLostWrite    = "lost-write"     // an acknowledged write is held by no running replica
	InvResurrection = "resurrection"   // a replica holds a value older than an acknowledged delete
	InvPhantom      = "phantom"        // a replica holds a record no client wrote
	InvDivergence   = "divergence"     // running replicas differ after the faults healed
	InvLWW          = "lww"            // a replica misses the highest version written of a key
	InvMembership   = "membership"     // membership views disagree after quiet
	InvClock        = "clock"          // a node off by more than the bound acknowledged a write
	InvConvergence  = "no-convergence" // replicas not identical within the settling bound
	InvQuarantine   = "quarantine"     // an honest node quarantined another (no adversary, no clock fault), or refused its requests for their rate (no adversary)
)

// Violation is one broken invariant.
type Violation struct {
	Invariant string `json:"invariant" yaml:"invariant"`
	Key       string `json:"key,omitempty" yaml:"key,omitempty"`
	Node      string `json:"node,omitempty" yaml:"node,omitempty"`
	Detail    string `json:"detail" yaml:"detail"`
}

func (v Violation) String() string {
	s := v.Invariant
	if v.Key != "" {
		s += " key " + v.Key
	}
	if v.Node != "" {
		s += " on " + v.Node
	}
	return s + ": " + v.Detail
}

// Check reads a history and the final replicas and returns every broken
// invariant, in a fixed order.
//
// Always: no acknowledged write is lost (some running replica holds its
// version or a newer one of its key); no replica holds a live value older
// than an acknowledged delete of its key once the replicas agree; every
// record held was written by a client (same key, version, value and
// tombstone as an op that was not refused). With opts.Converged: all
// replicas are identical and hold, for each key, the highest version
// written (acknowledged, or held anywhere). With opts.Members: every
// replica sees exactly the replicas alive.
func Check(history []Op, replicas []Replica, opts CheckOptions) []Violation {
	var out []Violation
	byKey := map[string][]Op{}
	byVersion := map[string]map[store.Version]Op{}
	for _, o := range history {
		if o.Outcome == Fail {
			continue
		}
		byKey[o.Key] = append(byKey[o.Key], o)
		if byVersion[o.Key] == nil {
			byVersion[o.Key] = map[store.Version]Op{}
		}
		byVersion[o.Key][o.Version] = o
	}
	keys := map[string]bool{}
	for k := range byKey {
		keys[k] = true
	}
	for _, r := range replicas {
		for k := range r.Records {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)

	for _, k := range sorted {
		// Phantoms: a record no client wrote.
		for _, r := range replicas {
			rec, ok := r.Records[k]
			if !ok {
				continue
			}
			o, known := byVersion[k][rec.Version]
			if !known {
				out = append(out, Violation{InvPhantom, k, r.Node, fmt.Sprintf("holds %s, which no client wrote", rec.Version)})
			} else if o.Delete != rec.Tombstone || (!o.Delete && !bytes.Equal([]byte(o.Value), rec.Value)) {
				out = append(out, Violation{InvPhantom, k, r.Node, fmt.Sprintf("holds %s with other content than op #%d wrote", rec.Version, o.Index)})
			}
		}
		// Lost writes: an acknowledged version no running replica
		// reaches.
		var best store.Version
		for _, r := range replicas {
			if rec, ok := r.Records[k]; ok && rec.Version.Compare(best) > 0 {
				best = rec.Version
			}
		}
		highest := best
		for _, o := range byKey[k] {
			if o.Outcome != OK {
				continue
			}
			if o.Version.Compare(highest) > 0 {
				highest = o.Version
			}
			if len(replicas) > 0 && o.Version.Compare(best) > 0 {
				what := "write"
				if o.Delete {
					what = "delete"
				}
				held := "nothing"
				if best != (store.Version{}) {
					held = best.String()
				}
				out = append(out, Violation{InvLostWrite, k, o.Node, fmt.Sprintf("acknowledged %s op #%d %s, but the newest any running replica holds is %s", what, o.Index, o.Version, held)})
			}
		}
		// Resurrections: a live value older than an acknowledged delete,
		// once the replicas agree (before, it is residue, not a
		// resurrection).
		if opts.Converged {
			for _, o := range byKey[k] {
				if o.Outcome != OK || !o.Delete {
					continue
				}
				for _, r := range replicas {
					if rec, ok := r.Records[k]; ok && !rec.Tombstone && rec.Version.Compare(o.Version) < 0 {
						out = append(out, Violation{InvResurrection, k, r.Node, fmt.Sprintf("holds value %s, older than acknowledged delete op #%d %s", rec.Version, o.Index, o.Version)})
					}
				}
			}
		}
		if !opts.Converged {
			continue
		}
		// LWW agreement: everyone holds the highest version written.
		for _, r := range replicas {
			rec, ok := r.Records[k]
			if !ok || rec.Version != highest {
				held := "nothing"
				if ok {
					held = rec.Version.String()
				}
				out = append(out, Violation{InvLWW, k, r.Node, fmt.Sprintf("holds %s, the highest version written is %s", held, highest)})
			}
		}
		// Identical replicas.
		if len(replicas) > 1 {
			ref, refOK := replicas[0].Records[k]
			for _, r := range replicas[1:] {
				rec, ok := r.Records[k]
				if ok != refOK || (ok && !sameRecord(rec, ref)) {
					out = append(out, Violation{InvDivergence, k, r.Node, fmt.Sprintf("differs from %s: %s against %s", replicas[0].Node, describe(rec, ok), describe(ref, refOK))})
				}
			}
		}
	}
	if opts.Members {
		var running []string
		for _, r := range replicas {
			running = append(running, r.Node)
		}
		slices.Sort(running)
		for _, r := range replicas {
			alive := slices.Clone(r.Alive)
			slices.Sort(alive)
			if !slices.Equal(alive, running) {
				out = append(out, Violation{Invariant: InvMembership, Node: r.Node, Detail: fmt.Sprintf("sees alive [%s], running are [%s]", strings.Join(alive, " "), strings.Join(running, " "))})
			}
		}
	}
	return out
}

func sameRecord(a, b store.Record) bool {
	return a.Version == b.Version && a.Tombstone == b.Tombstone && bytes.Equal(a.Value, b.Value)
}

func describe(r store.Record, ok bool) string {
	switch {
	case !ok:
		return "nothing"
	case r.Tombstone:
		return "tombstone " + r.Version.String()
	}
	return fmt.Sprintf("%.24q %s", r.Value, r.Version)
}
