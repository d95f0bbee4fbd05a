// Command vsmemberlist measures hearsay side by side with
// hashicorp/memberlist v0.7.0, in one process on 127.0.0.1: N nodes of one
// system, then N of the other, alternating which goes first from one run
// to the next, with the same workload.
//
//   - failure detection: one node (never the seed) is stopped abruptly
//     (memberlist: Shutdown without Leave; hearsay: Close without Leave);
//     measured are the time until the first other node suspects it and
//     until every other node has declared it dead (memberlist's
//     EventDelegate.NotifyLeave, which fires on death too; hearsay's
//     MemberEvents of kind dead);
//   - broadcast: node 0 sends updates of a given size; measured are the
//     share of (node, update) pairs delivered before a deadline, the time
//     until every node has an update (p50, p99, max over updates) and the
//     bytes all nodes put on the wire per payload byte delivered.
//
// It lives in a module of its own so that hearsay does not depend on
// memberlist. Run it with `make bench-vs-memberlist` from the repository
// root, or `go run . --help` here.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type options struct {
	Measure        []string      `json:"measure"`
	Systems        []string      `json:"systems"`
	Profile        string        `json:"profile"`
	Sizes          []int         `json:"detection_sizes"`
	Runs           int           `json:"detection_runs"`
	BroadcastNodes int           `json:"broadcast_nodes"`
	BroadcastRuns  int           `json:"broadcast_runs"`
	Values         []int         `json:"values"`
	Updates        int           `json:"updates"`
	LargeUpdates   int           `json:"large_updates"`
	Interval       time.Duration `json:"interval_ns"`
	Deadline       time.Duration `json:"deadline_ns"`
	Settle         time.Duration `json:"settle_ns"`
	Seed           uint64        `json:"seed"`
	// The broadcast tree's windows and lazy fanout (hearsay-plumtree).
	TreeEagerWindow time.Duration `json:"tree_eager_window_ns,omitempty"`
	TreeIHaveWindow time.Duration `json:"tree_ihave_window_ns,omitempty"`
	TreeLazyFanout  int           `json:"tree_lazy_fanout,omitempty"`
}

// largeValue is the size above which --large-updates applies: every node
// keeps every value in memory, so 48 nodes × 100 × 1 MiB would take about
// 10 GB of this process (measured: 1.1 GB for 10).
const largeValue = 64 << 10

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vsmemberlist:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("vsmemberlist", flag.ContinueOnError)
	var (
		o                               options
		measure, systems, sizes, values string
		asJSON                          bool
		jsonFile                        string
	)
	fs.StringVar(&measure, "measure", "detection,broadcast", "measurements to run: detection, broadcast, or both comma separated")
	fs.StringVar(&systems, "systems", "memberlist,hearsay", "systems to run, comma separated: memberlist, hearsay (every mechanism at its default), hearsay-rumor (direct mail off: rumor mongering and anti-entropy), hearsay-plumtree (direct mail and rumors off: the broadcast tree and anti-entropy)")
	fs.DurationVar(&o.TreeEagerWindow, "tree-eager-window", 0, "hearsay-plumtree: the tree's eager window (engine.Config.Tree.EagerWindow)")
	fs.DurationVar(&o.TreeIHaveWindow, "tree-ihave-window", 0, "hearsay-plumtree: the tree's announcement window (0: the engine's default)")
	fs.IntVar(&o.TreeLazyFanout, "tree-lazy-fanout", 0, "hearsay-plumtree: lazy peers per announcement window (0: all)")
	fs.StringVar(&o.Profile, "profile", "lan", "preset of both systems: lan, wan or local (memberlist.Default{LAN,WAN,Local}Config, hearsay's membership profile of that name)")
	fs.StringVar(&sizes, "n", "16,48", "cluster sizes for failure detection, comma separated")
	fs.IntVar(&o.Runs, "runs", 5, "failure-detection runs per size and system")
	fs.IntVar(&o.BroadcastNodes, "broadcast-n", 48, "cluster size for broadcast")
	fs.IntVar(&o.BroadcastRuns, "broadcast-runs", 1, "broadcast runs per value size and system")
	fs.StringVar(&values, "values", "64,4096,1048576", "broadcast value sizes in bytes, comma separated")
	fs.IntVar(&o.Updates, "updates", 100, "updates broadcast per run")
	fs.IntVar(&o.LargeUpdates, "large-updates", 20, fmt.Sprintf("updates per run for values over %d bytes (every node keeps every value in memory)", largeValue))
	fs.DurationVar(&o.Interval, "interval", 10*time.Millisecond, "time between two updates sent")
	fs.DurationVar(&o.Deadline, "deadline", 30*time.Second, "how long after the last update is sent deliveries still count")
	fs.DurationVar(&o.Settle, "settle", 3*time.Second, "wait after the cluster formed, before measuring (join news dies down)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed for the choice of the stopped node and the values")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON")
	fs.StringVar(&jsonFile, "json-file", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Measure = splitList(measure)
	o.Systems = splitList(systems)
	var err error
	if o.Sizes, err = intList(sizes); err != nil {
		return fmt.Errorf("-n: %w", err)
	}
	if o.Values, err = intList(values); err != nil {
		return fmt.Errorf("-values: %w", err)
	}
	for _, s := range o.Systems {
		if s != "memberlist" && s != "hearsay" && s != "hearsay-rumor" && s != "hearsay-plumtree" {
			return fmt.Errorf("-systems: unknown system %q: want memberlist, hearsay, hearsay-rumor, hearsay-plumtree", s)
		}
	}
	for _, m := range o.Measure {
		if m != "detection" && m != "broadcast" {
			return fmt.Errorf("-measure: unknown measurement %q: want detection, broadcast", m)
		}
	}
	switch o.Profile {
	case "lan", "wan", "local":
	default:
		return fmt.Errorf("-profile %q: want lan, wan or local", o.Profile)
	}
	for _, n := range append(slices.Clone(o.Sizes), o.BroadcastNodes) {
		if n < 3 {
			return fmt.Errorf("cluster size %d: need at least 3 nodes", n)
		}
	}

	rep := report{Options: o, Started: time.Now()}
	rng := rand.New(rand.NewPCG(o.Seed, 0xbe4c))
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	if slices.Contains(o.Measure, "detection") {
		for r := range o.Runs {
			for _, n := range o.Sizes {
				victim := 1 + rng.IntN(n-1)
				for _, sys := range order(o, r) {
					d, err := measureDetection(sys, n, victim, o)
					if err != nil {
						return err
					}
					d.Run = r
					logf("detection run %d n=%d %-10s first suspicion %v, all dead %v", r+1, n, d.System, d.FirstSuspect, d.AllDead)
					rep.Detection = append(rep.Detection, d)
				}
			}
		}
	}
	if slices.Contains(o.Measure, "broadcast") {
		for r := range o.BroadcastRuns {
			for _, size := range o.Values {
				value := make([]byte, size)
				for i := range value {
					value[i] = byte(rng.Uint32())
				}
				for _, sys := range order(o, r) {
					b, err := measureBroadcast(sys, o, value)
					if err != nil {
						return err
					}
					b.Run = r
					logf("broadcast run %d %d B %-10s %s", r+1, size, b.System, b.summary())
					rep.Broadcast = append(rep.Broadcast, b)
				}
			}
		}
	}
	rep.summarize()
	if jsonFile != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		if err := os.WriteFile(jsonFile, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("-json-file: %w", err)
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(os.Stdout)
	return nil
}

// order returns the systems of run r, the first one alternating.
func order(o options, r int) []system {
	var out []system
	for _, name := range o.Systems {
		switch name {
		case "memberlist":
			out = append(out, newMemberlist(o.Profile))
		case "hearsay", "hearsay-rumor", "hearsay-plumtree":
			out = append(out, newHearsay(o.Profile, name, o))
		}
	}
	if r%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// detection is one failure-detection run.
type detection struct {
	System string `json:"system"`
	N      int    `json:"n"`
	Run    int    `json:"run"`
	// FirstSuspect is from the stop until the first node suspected the
	// stopped one (memberlist: from its log line "Suspect <node> has failed"); FirstDead until the
	// first declared it dead; AllDead until every other node had.
	FirstSuspect time.Duration `json:"first_suspect_ns"`
	FirstDead    time.Duration `json:"first_dead_ns"`
	AllDead      time.Duration `json:"all_dead_ns"`
	// OtherDeaths counts deaths of nodes that were not stopped: false
	// alarms.
	OtherDeaths int `json:"other_deaths"`
}

func measureDetection(sys system, n, victim int, o options) (detection, error) {
	d := detection{System: sys.Name(), N: n}
	vname := sys.NodeName(victim)
	var (
		mu           sync.Mutex
		stoppedAt    time.Time
		firstSuspect time.Time
		dead         = map[int]time.Time{}
	)
	obs := &observer{
		suspect: func(node int, member string, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			if member == vname && !stoppedAt.IsZero() && firstSuspect.IsZero() {
				firstSuspect = at
			}
		},
		dead: func(node int, member string, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			if member != vname {
				d.OtherDeaths++
				return
			}
			if _, ok := dead[node]; !ok && node != victim {
				dead[node] = at
			}
		},
	}
	defer sys.Close()
	if err := sys.Start(n, obs, 2*time.Minute); err != nil {
		return d, fmt.Errorf("%s, %d nodes: %w", sys.Name(), n, err)
	}
	time.Sleep(o.Settle)
	mu.Lock()
	stoppedAt = time.Now()
	mu.Unlock()
	if err := sys.Kill(victim); err != nil {
		return d, err
	}
	err := waitUntil(3*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(dead) == n-1
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		return d, fmt.Errorf("%s, %d nodes: %d of %d declared the stopped node dead: %w", sys.Name(), n, len(dead), n-1, err)
	}
	if !firstSuspect.IsZero() {
		d.FirstSuspect = firstSuspect.Sub(stoppedAt)
	}
	for _, t := range dead {
		if d.FirstDead == 0 || t.Sub(stoppedAt) < d.FirstDead {
			d.FirstDead = t.Sub(stoppedAt)
		}
		d.AllDead = max(d.AllDead, t.Sub(stoppedAt))
	}
	return d, nil
}

// broadcast is one broadcast run.
type broadcast struct {
	System string `json:"system"`
	N      int    `json:"n"`
	Run    int    `json:"run"`
	Value  int    `json:"value_bytes"`
	// Unsendable says why the system cannot send such a value at all;
	// the other fields are then empty.
	Unsendable string `json:"unsendable,omitempty"`
	Updates    int    `json:"updates"`
	// Completeness is the share of (receiving node, update) pairs
	// delivered before the deadline; Complete the updates every node got.
	Completeness float64 `json:"completeness"`
	Complete     int     `json:"complete_updates"`
	// P50, P99 and Max are over the complete updates, of the time from
	// sending one until the last node had it.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	// WireBytes is what all nodes sent from the first update until the
	// last delivery (background probing included); PerPayloadByte divides
	// it by the payload bytes delivered (pairs delivered × value size).
	WireBytes      uint64  `json:"wire_bytes"`
	PerPayloadByte float64 `json:"wire_bytes_per_payload_byte"`
	// IdleBytesPerSecond is the whole cluster's traffic before the first
	// update, for scale.
	IdleBytesPerSecond float64 `json:"idle_bytes_per_second"`
	// PerMechanism splits PerPayloadByte by the mechanism whose messages
	// carried the bytes (as framed, before sealing), for systems that
	// count them (hearsay's Node.Traffic).
	PerMechanism map[string]float64 `json:"per_payload_byte_by_mechanism,omitempty"`
}

// mechanismCounter is a system that counts its bytes sent by mechanism.
type mechanismCounter interface {
	BytesByMechanism() map[string]uint64
}

func (b broadcast) summary() string {
	if b.Unsendable != "" {
		return "cannot send: " + b.Unsendable
	}
	s := fmt.Sprintf("%.1f%% delivered, %d/%d complete, p50 %v p99 %v max %v, %.2f B/payload B",
		100*b.Completeness, b.Complete, b.Updates, ms(b.P50), ms(b.P99), ms(b.Max), b.PerPayloadByte)
	if len(b.PerMechanism) > 0 {
		var parts []string
		for _, m := range slices.Sorted(maps.Keys(b.PerMechanism)) {
			parts = append(parts, fmt.Sprintf("%s %.2f", m, b.PerMechanism[m]))
		}
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

func measureBroadcast(sys system, o options, value []byte) (broadcast, error) {
	n := o.BroadcastNodes
	b := broadcast{System: sys.Name(), N: n, Value: len(value), Updates: o.Updates}
	if len(value) > largeValue {
		b.Updates = o.LargeUpdates
	}
	if ok, why := sys.CanBroadcast(len(value)); !ok {
		b.Unsendable = why
		return b, nil
	}
	var (
		mu        sync.Mutex
		delivered = make([][]time.Time, n)
		count     int
		last      time.Time
	)
	for i := range delivered {
		delivered[i] = make([]time.Time, b.Updates)
	}
	obs := &observer{deliver: func(node, id int, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if node <= 0 || node >= n || id < 0 || id >= b.Updates || !delivered[node][id].IsZero() {
			return
		}
		delivered[node][id] = at
		count++
		last = at
	}}
	defer sys.Close()
	if err := sys.Start(n, obs, 2*time.Minute); err != nil {
		return b, fmt.Errorf("%s, %d nodes: %w", sys.Name(), n, err)
	}
	time.Sleep(o.Settle / 2)
	idleFrom, idleBytes := time.Now(), sys.BytesSent()
	time.Sleep(o.Settle / 2)

	// Sample the byte counters while the updates spread, to read them at
	// the last delivery.
	type sample struct {
		at    time.Time
		bytes uint64
		mech  map[string]uint64
	}
	var samples []sample
	mc, _ := sys.(mechanismCounter)
	sampleNow := func() {
		s := sample{at: time.Now(), bytes: sys.BytesSent()}
		if mc != nil {
			s.mech = mc.BytesByMechanism()
		}
		samples = append(samples, s)
	}
	sampleNow()
	b.IdleBytesPerSecond = float64(samples[0].bytes-idleBytes) / samples[0].at.Sub(idleFrom).Seconds()
	sent := make([]time.Time, b.Updates)
	next := time.Now()
	for id := range b.Updates {
		sent[id] = time.Now()
		if err := sys.Broadcast(id, value); err != nil {
			return b, err
		}
		next = next.Add(o.Interval)
		time.Sleep(time.Until(next))
		sampleNow()
	}
	want := b.Updates * (n - 1)
	deadline := time.Now().Add(o.Deadline)
	for {
		sampleNow()
		mu.Lock()
		done := count == want
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sampleNow()

	mu.Lock()
	defer mu.Unlock()
	b.Completeness = float64(count) / float64(want)
	var full []time.Duration
	for id := range b.Updates {
		var latest time.Time
		complete := true
		for node := 1; node < n; node++ {
			t := delivered[node][id]
			if t.IsZero() {
				complete = false
				break
			}
			if t.After(latest) {
				latest = t
			}
		}
		if complete {
			full = append(full, latest.Sub(sent[id]))
		}
	}
	b.Complete = len(full)
	slices.Sort(full)
	b.P50, b.P99, b.Max = percentile(full, 50), percentile(full, 99), percentile(full, 100)
	end := samples[len(samples)-1]
	if !last.IsZero() {
		for _, s := range samples {
			if !s.at.Before(last) {
				end = s
				break
			}
		}
	}
	b.WireBytes = end.bytes - samples[0].bytes
	if count > 0 {
		payload := float64(count * len(value))
		b.PerPayloadByte = float64(b.WireBytes) / payload
		if mc != nil {
			b.PerMechanism = map[string]float64{}
			for m, v := range end.mech {
				b.PerMechanism[m] = float64(v-samples[0].mech[m]) / payload
			}
		}
	}
	return b, nil
}

// waitUntil polls cond every 10 ms until it holds, or fails after timeout.
func waitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// percentile of sorted durations, nearest rank; 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
