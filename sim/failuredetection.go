package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/wire"
)

// This file holds the failure-detection experiments: crash detection time,
// false positives and message load, run on a virtual cluster. The test file
// failuredetection_test.go runs them; `hearsay sim` may expose them.

// FormCluster starts n nodes named n1..n{n}, each configured by configure
// (nil for the defaults), and joins them through n1: every node joins once
// so that n1 learns of it, and once more so that it gets n1's full member
// list. It returns when every node sees n live members, or fails after ten
// virtual minutes.
func FormCluster(opts Options, n int, configure func(*engine.Config)) (*Cluster, error) {
	c := New(opts)
	for i := 1; i <= n; i++ {
		if _, err := c.AddNode(fmt.Sprintf("n%d", i), configure); err != nil {
			return nil, err
		}
	}
	nodes := c.Nodes()
	for _, nd := range nodes[1:] {
		nd.Join("n1")
	}
	ok, err := c.RunUntil(time.Minute, func() bool { return nodes[0].Engine.NumLive() == n })
	if err != nil || !ok {
		return nil, fmt.Errorf("sim: %d nodes did not all reach n1 (ok=%v): %w", n, ok, err)
	}
	for _, nd := range nodes[1:] {
		nd.Join("n1")
	}
	ok, err = c.RunUntil(10*time.Minute, func() bool {
		for _, nd := range nodes {
			if nd.Engine.NumLive() != n {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		return nil, fmt.Errorf("sim: cluster of %d did not form (ok=%v): %w", n, ok, err)
	}
	return c, nil
}

// Detection is how long the cluster took to notice one crash.
type Detection struct {
	// FirstSuspect is the time from the crash until the first member
	// suspected the crashed one.
	FirstSuspect time.Duration
	// AllDead is the time until every running member held it dead.
	AllDead time.Duration
}

// MeasureDetection crashes members one at a time and measures how long the
// others take to suspect and to declare each dead. Each cluster of n
// members takes up to n/10 crashes (at least one), one after the other,
// each once the previous one was declared dead everywhere; then a new
// cluster is formed. The crashed member is drawn at random, never n1.
func MeasureDetection(opts Options, n, runs int, configure func(*engine.Config)) ([]Detection, error) {
	if n < 3 {
		return nil, fmt.Errorf("sim: detection needs 3 members or more, not %d", n)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x5eed))
	perCluster := max(1, n/10)
	var out []Detection
	for cl := 0; len(out) < runs; cl++ {
		o := opts
		o.Seed = opts.Seed + uint64(cl)*7919
		c, err := FormCluster(o, n, configure)
		if err != nil {
			return nil, err
		}
		if err := c.RunFor(10 * time.Second); err != nil { // let the join news settle
			return nil, err
		}
		for range perCluster {
			if len(out) == runs {
				break
			}
			d, err := detectOne(c, rng)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
	}
	return out, nil
}

func detectOne(c *Cluster, rng *rand.Rand) (Detection, error) {
	var up []*Node
	for _, nd := range c.Nodes()[1:] {
		if nd.Up() {
			up = append(up, nd)
		}
	}
	victim := up[rng.IntN(len(up))]
	start := c.Now()
	var d Detection
	dead := map[string]bool{}
	c.OnMemberEvent = func(nd *Node, ev membership.Event) {
		if ev.Member.Name != victim.Name {
			return
		}
		switch ev.Member.State {
		case wire.State_SUSPECT:
			if d.FirstSuspect == 0 {
				d.FirstSuspect = c.Now().Sub(start)
			}
		case wire.State_DEAD:
			dead[nd.Name] = true
		}
	}
	defer func() { c.OnMemberEvent = nil }()
	victim.Crash()
	ok, err := c.RunUntil(30*time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if nd.Up() && !dead[nd.Name] {
				return false
			}
		}
		return true
	})
	if err != nil {
		return d, err
	}
	if !ok {
		return d, fmt.Errorf("sim: crash of %s not detected by every member in 30 minutes", victim.Name)
	}
	d.AllDead = c.Now().Sub(start)
	if d.FirstSuspect == 0 {
		d.FirstSuspect = d.AllDead
	}
	return d, nil
}

// FalsePositives counts accusations of running members during a run.
type FalsePositives struct {
	// Suspicions and Deaths count distinct (member, incarnation) pairs that
	// some member suspected, or declared dead, while the member was
	// running.
	Suspicions, Deaths int
	// Members and Duration are the cluster size and the virtual time
	// observed.
	Members  int
	Duration time.Duration
	// SlowSuspicions and SlowDeaths count the accusations made by the
	// starved node only (when there is one); SlowAccused counts the
	// suspicions of the starved node itself.
	SlowSuspicions, SlowDeaths, SlowAccused int
	// SlowHealth is the starved node's local health score at the end.
	SlowHealth int
}

// PerMemberHour returns deaths and suspicions per member per hour.
func (f FalsePositives) PerMemberHour() (deaths, suspicions float64) {
	h := f.Duration.Hours() * float64(f.Members)
	return float64(f.Deaths) / h, float64(f.Suspicions) / h
}

// MeasureFalsePositives runs a cluster of n running members for d and
// counts the suspicions and deaths of members that never failed. When slow
// is positive, member n2 is starved of CPU: every message to it waits slow
// before it is handled.
func MeasureFalsePositives(opts Options, n int, d, slow time.Duration, configure func(*engine.Config)) (FalsePositives, error) {
	form := opts
	form.Loss = 0 // form the cluster on a clean network, then turn loss on
	c, err := FormCluster(form, n, configure)
	if err != nil {
		return FalsePositives{}, err
	}
	c.opts.Loss = opts.Loss
	var starved *Node
	if slow > 0 {
		starved = c.Nodes()[1]
		starved.ProcessingDelay = slow
	}
	if err := c.RunFor(30 * time.Second); err != nil { // settle
		return FalsePositives{}, err
	}
	f := FalsePositives{Members: n, Duration: d}
	suspected := map[string]bool{}
	died := map[string]bool{}
	c.OnMemberEvent = func(nd *Node, ev membership.Event) {
		key := fmt.Sprintf("%s@%d", ev.Member.Name, ev.Member.Incarnation)
		switch ev.Member.State {
		case wire.State_SUSPECT:
			if !suspected[key] {
				suspected[key] = true
				f.Suspicions++
				if starved != nil && ev.Member.Name == starved.Name {
					f.SlowAccused++
				}
			}
		case wire.State_DEAD:
			if !died[key] {
				died[key] = true
				f.Deaths++
			}
		}
	}
	var before membership.Stats
	if starved != nil {
		before = starved.Engine.Stats().Members
	}
	err = c.RunFor(d)
	c.OnMemberEvent = nil
	if starved != nil {
		s := starved.Engine.Stats().Members
		f.SlowSuspicions = int(s.Suspected - before.Suspected)
		f.SlowDeaths = int(s.Declared - before.Declared)
		f.SlowHealth = s.Health
	}
	return f, err
}

// Load is the failure detector's message load per member per protocol
// period.
type Load struct {
	Messages float64 // membership messages sent (ping, ack, ping-req, nack, gossip)
	Bytes    float64 // their encoded size, piggybacked updates included
}

// MeasureLoad forms a cluster of n members, lets it settle (until no
// member has news left to gossip), and measures
// the failure detector's messages over the given number of protocol
// periods. With crash set, one member is crashed at the start of the
// window, so that the window includes indirect probes and suspicion
// traffic.
func MeasureLoad(opts Options, n, periods int, crash bool, configure func(*engine.Config)) (Load, error) {
	c, err := FormCluster(opts, n, configure)
	if err != nil {
		return Load{}, err
	}
	interval := c.Nodes()[0].cfg.Membership.ProbeInterval
	// Settle: the news of n joins is gossiped until every member has
	// passed it on often enough, minutes at 1,000 members.
	var gossiped bool
	c.OnSend = func(_ *Node, m engine.Message, _ int) { gossiped = gossiped || m.Env.Body == nil }
	for i := 0; i == 0 || gossiped; i++ {
		if i == 120 {
			return Load{}, fmt.Errorf("sim: %d members still gossiping join news after 20 minutes", n)
		}
		gossiped = false
		if err := c.RunFor(10 * time.Second); err != nil {
			return Load{}, err
		}
	}
	if crash {
		c.Nodes()[n-1].Crash()
	}
	var msgs, bytes float64
	c.OnSend = func(_ *Node, m engine.Message, size int) {
		switch m.Env.Body.(type) {
		case *wire.Envelope_Ping, *wire.Envelope_Ack, *wire.Envelope_PingReq, *wire.Envelope_Nack, nil:
			msgs++
			bytes += float64(size)
		}
	}
	err = c.RunFor(time.Duration(periods) * interval)
	c.OnSend = nil
	members := float64(n)
	if crash {
		members--
	}
	return Load{Messages: msgs / members / float64(periods), Bytes: bytes / members / float64(periods)}, err
}

// Percentile returns the p-th percentile (0 to 100) of ds, nearest rank.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
