package sim_test

import (
	"flag"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store/memstore"
)

var (
	fdReport = flag.Bool("fd.report", false, "run the failure-detection measurements (docs/PERFORMANCE.md) and print them")
	fdRuns   = flag.Int("fd.runs", 50, "crashes measured per cluster size with -fd.report")
	fdSizes  = flag.String("fd.sizes", "10,100,1000", "cluster sizes measured with -fd.report")
	fdHours  = flag.Float64("fd.hours", 2, "virtual hours per false-positive run with -fd.report")
)

var lan = sim.Options{Latency: time.Millisecond, Jitter: 4 * time.Millisecond}

func state(nd *sim.Node, name string) wire.State {
	for _, m := range nd.Engine.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return -1
}

// detectionBound derives, from the configuration, how long a crash of one
// of n members may take to be declared dead by every other member, with
// the default timers and no loss:
//
//   - first suspicion: each of the n-1 other members probes the crashed one
//     once per round of n-1 periods in shuffled round-robin order (SWIM
//     §4.3), so at most 2(n-1)-1 periods apart; the probe then takes one
//     more period (direct timeout, then ping-req) to fail: 2(n-1)·T;
//   - the first accuser's suspicion timer runs at most its maximum,
//     SuspicionMaxMult · SuspicionTimeout · max(1, log10 n);
//   - the dead news then spreads by piggybacking: every member that knows
//     it sends it on at least one message per period to a member in
//     random order, which reaches all n in O(log n) periods with high
//     probability; 3·ceil(log2 n) periods bounds it generously.
func detectionBound(cfg membership.Config, n int) (first, all time.Duration) {
	T := cfg.ProbeInterval
	first = time.Duration(2*(n-1)) * T
	lo := time.Duration(float64(cfg.SuspicionTimeout) * max(1, math.Log10(float64(n))))
	hi := lo * time.Duration(cfg.SuspicionMaxMult)
	spread := time.Duration(3*math.Ceil(math.Log2(float64(n)))) * T
	return first, first + hi + spread
}

func TestCrashDetectedWithinBound(t *testing.T) {
	sim.SkipHeavyUnderRace(t)
	for _, n := range []int{5, 10, 30} {
		t.Run(fmt.Sprint("n=", n), func(t *testing.T) {
			opts := lan
			opts.Seed = uint64(n)
			ds, err := sim.MeasureDetection(opts, n, 10, nil)
			if err != nil {
				t.Fatal(err)
			}
			first, all := detectionBound(membership.DefaultConfig(), n)
			for i, d := range ds {
				if d.FirstSuspect > first || d.AllDead > all {
					t.Errorf("crash %d: first suspicion after %v (bound %v), dead everywhere after %v (bound %v)", i, d.FirstSuspect, first, d.AllDead, all)
				}
				if d.FirstSuspect <= 0 || d.AllDead < d.FirstSuspect {
					t.Errorf("crash %d: implausible %+v", i, d)
				}
			}
			t.Logf("n=%d: first suspicion p50 %v max %v (bound %v); dead everywhere p50 %v max %v (bound %v)", n,
				sim.Percentile(firsts(ds), 50), sim.Percentile(firsts(ds), 100), first,
				sim.Percentile(alls(ds), 50), sim.Percentile(alls(ds), 100), all)
		})
	}
}

func firsts(ds []sim.Detection) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.FirstSuspect
	}
	return out
}

func alls(ds []sim.Detection) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.AllDead
	}
	return out
}

func TestNoFalsePositivesWithoutLoss(t *testing.T) {
	sim.SkipHeavyUnderRace(t)
	d := 2 * time.Hour
	if testing.Short() {
		d = 10 * time.Minute
	}
	opts := lan
	opts.Seed = 11
	f, err := sim.MeasureFalsePositives(opts, 20, d, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Suspicions != 0 || f.Deaths != 0 {
		t.Fatalf("over %v with no loss: %d suspicions and %d deaths of running members, want none", d, f.Suspicions, f.Deaths)
	}
}

// TestStarvedNodeRefutesSuspicion: a node whose messages wait 2 s before it
// handles them answers every probe too late, so the others suspect it; it
// hears the suspicion (carried on the probes themselves, Lifeguard's buddy
// system) and refutes it by raising its incarnation before the suspicion
// timeout, and is never declared dead.
func TestStarvedNodeRefutesSuspicion(t *testing.T) {
	sim.SkipHeavyUnderRace(t)
	opts := lan
	opts.Seed = 12
	c, err := sim.FormCluster(opts, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := c.Nodes()[1]
	inc := slow.Engine.Self().Incarnation
	died := false
	c.OnMemberEvent = func(nd *sim.Node, ev membership.Event) {
		if ev.Member.Name == slow.Name && ev.Member.State == wire.State_DEAD {
			died = true
		}
	}
	slow.ProcessingDelay = 2 * time.Second
	ok, err := c.RunUntil(time.Minute, func() bool { return state(c.Nodes()[0], slow.Name) == wire.State_SUSPECT })
	if err != nil || !ok {
		t.Fatalf("the starved node was never suspected: %v", err)
	}
	ok, err = c.RunUntil(time.Minute, func() bool {
		return slow.Engine.Self().Incarnation > inc && slow.Engine.Stats().Members.Refuted > 0
	})
	if err != nil || !ok {
		t.Fatalf("the starved node did not refute: %+v", slow.Engine.Stats().Members)
	}
	slow.ProcessingDelay = 0
	ok, err = c.RunUntil(time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if state(nd, slow.Name) != wire.State_ALIVE && nd != slow {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("the refuted node is not alive everywhere: %v", err)
	}
	if died {
		t.Fatal("the starved node was declared dead although it refuted in time")
	}
}

// TestSuspectRefutesThroughIndirectPath: one link is cut, but a ping-req
// through the others keeps the member alive, with no suspicion at all.
func TestIndirectProbeAvoidsSuspicion(t *testing.T) {
	opts := lan
	opts.Seed = 13
	c, err := sim.FormCluster(opts, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	suspicions := 0
	c.OnMemberEvent = func(nd *sim.Node, ev membership.Event) {
		if ev.Member.State == wire.State_SUSPECT {
			suspicions++
		}
	}
	c.Cut("n1", "n2")
	c.Cut("n2", "n1")
	if err := c.RunFor(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if suspicions != 0 {
		t.Fatalf("%d suspicions although every member was reachable indirectly", suspicions)
	}
	if s := c.Nodes()[0].Engine.Stats().Members; s.PingReqs == 0 {
		t.Fatalf("n1 never sent a ping-req: %+v", s)
	}
}

func TestPartitionDeclaredDeadAndHeals(t *testing.T) {
	sim.SkipHeavyUnderRace(t)
	opts := lan
	opts.Seed = 14
	const n = 10
	c, err := sim.FormCluster(opts, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	var a, b []string
	for i, nd := range c.Nodes() {
		if i < n/2 {
			a = append(a, nd.Name)
		} else {
			b = append(b, nd.Name)
		}
	}
	side := map[string][]string{}
	for _, x := range a {
		side[x] = b
	}
	for _, x := range b {
		side[x] = a
	}
	c.Partition(a, b)
	ok, err := c.RunUntil(5*time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			for _, other := range side[nd.Name] {
				if state(nd, other) != wire.State_DEAD {
					return false
				}
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("the halves did not declare each other dead: %v", err)
	}
	for _, nd := range c.Nodes() {
		if nd.Engine.NumLive() != n/2 {
			t.Fatalf("%s sees %d live members, want its own half (%d)", nd.Name, nd.Engine.NumLive(), n/2)
		}
	}
	c.Heal()
	healed := c.Now()
	ok, err = c.RunUntil(5*time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if nd.Engine.NumLive() != n {
				return false
			}
			for _, m := range nd.Engine.Members() {
				if m.State != wire.State_ALIVE {
					return false
				}
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("the cluster did not heal: %v", err)
	}
	t.Logf("healed %v after the partition ended", c.Now().Sub(healed))
}

func TestLeftMemberNotProbedOrSuspected(t *testing.T) {
	opts := lan
	opts.Seed = 15
	c, err := sim.FormCluster(opts, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	gone := c.Nodes()[4]
	gone.Leave()
	ok, err := c.RunUntil(10*time.Second, func() bool {
		acked, sent := gone.Engine.LeaveAcked()
		return sent == 4 && acked == 4
	})
	if err != nil || !ok {
		t.Fatal("leave not acknowledged")
	}
	gone.Crash()
	bad := 0
	c.OnMemberEvent = func(nd *sim.Node, ev membership.Event) {
		if ev.Member.Name == gone.Name && ev.Member.State != wire.State_LEFT {
			bad++
		}
	}
	if err := c.RunFor(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.Nodes()[:4] {
		if st := state(nd, gone.Name); st != wire.State_LEFT {
			t.Fatalf("%s sees the left member as %v", nd.Name, st)
		}
	}
	if bad != 0 {
		t.Fatalf("%d state changes of a left member", bad)
	}
}

func TestReapedNameJoinsAgain(t *testing.T) {
	opts := lan
	opts.Seed = 16
	reap := func(cfg *engine.Config) { cfg.Membership.ReapTimeout = time.Minute }
	c, err := sim.FormCluster(opts, 4, reap)
	if err != nil {
		t.Fatal(err)
	}
	n1, n4 := c.Nodes()[0], c.Nodes()[3]
	n4.Crash()
	ok, err := c.RunUntil(5*time.Minute, func() bool {
		for _, nd := range c.Nodes()[:3] {
			if state(nd, n4.Name) != -1 {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("n4 was not reaped: n1 sees it %v", state(n1, n4.Name))
	}
	if s := n1.Engine.Stats().Members; s.Reaped != 1 {
		t.Fatalf("n1 reaped %d members, want 1", s.Reaped)
	}
	// The name comes back on a blank disk, so at incarnation 1: lower than
	// its last one, accepted because the old entry was forgotten.
	n4.Store = memstore.New()
	if err := n4.Restart(); err != nil {
		t.Fatal(err)
	}
	if inc := n4.Engine.Self().Incarnation; inc != 1 {
		t.Fatalf("fresh node starts at incarnation %d", inc)
	}
	n4.Join("n1")
	ok, err = c.RunUntil(time.Minute, func() bool {
		for _, nd := range c.Nodes() {
			if nd.Engine.NumLive() != 4 {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("the reaped name did not join again: n1 sees it %v", state(n1, n4.Name))
	}
}

// TestLocalHealthCalmsStarvedNode: a node starved of CPU sees its probes
// fail without the nacks healthy helpers send; local health awareness makes
// it stretch its timers and accuse far fewer members.
func TestLocalHealthCalmsStarvedNode(t *testing.T) {
	sim.SkipHeavyUnderRace(t)
	run := func(lhm int) sim.FalsePositives {
		opts := lan
		opts.Seed = 17
		f, err := sim.MeasureFalsePositives(opts, 10, 20*time.Minute, 1500*time.Millisecond, func(cfg *engine.Config) {
			cfg.Membership.MaxLocalHealth = lhm
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	with, without := run(8), run(0)
	t.Logf("starved node accused %d members with local health awareness (score %d), %d without", with.SlowSuspicions, with.SlowHealth, without.SlowSuspicions)
	if with.SlowHealth == 0 {
		t.Fatal("the starved node's local health score stayed 0")
	}
	if with.SlowSuspicions*4 > without.SlowSuspicions {
		t.Fatalf("local health awareness did not cut the starved node's accusations by 4x: %d with, %d without", with.SlowSuspicions, without.SlowSuspicions)
	}
}

func TestLoadDoesNotGrowWithN(t *testing.T) {
	sim.SkipHeavyUnderRace(t)
	var loads []sim.Load
	for _, n := range []int{10, 100} {
		opts := lan
		opts.Seed = uint64(n)
		l, err := sim.MeasureLoad(opts, n, 60, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("n=%d: %.2f messages, %.0f bytes per member per period", n, l.Messages, l.Bytes)
		loads = append(loads, l)
	}
	// A healthy member sends one ping and one ack per period.
	for _, l := range loads {
		if l.Messages < 1.8 || l.Messages > 2.2 {
			t.Fatalf("load %.2f messages per member per period, want about 2", l.Messages)
		}
	}
}

// TestFailureDetectionReport prints the measurements of docs/PERFORMANCE.md
// ("Failure detection"). It runs only with -fd.report:
//
//	go test ./sim -run TestFailureDetectionReport -fd.report -v -timeout 60m
func TestFailureDetectionReport(t *testing.T) {
	if !*fdReport {
		t.Skip("measurements: run with -fd.report")
	}
	var sizes []int
	for _, s := range strings.Split(*fdSizes, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil {
			t.Fatalf("-fd.sizes %q: %v", *fdSizes, err)
		}
		sizes = append(sizes, n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nDetection time of a crashed member (%d crashes per size; 1 ms latency + 0-4 ms jitter; default config)\n\n", *fdRuns)
	fmt.Fprintln(&b, "| N | first suspicion p50 | p90 | p99 | max | dead everywhere p50 | p90 | p99 | max |")
	fmt.Fprintln(&b, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, n := range sizes {
		opts := lan
		opts.Seed = 100 + uint64(n)
		start := time.Now()
		ds, err := sim.MeasureDetection(opts, n, *fdRuns, nil)
		if err != nil {
			t.Fatal(err)
		}
		f, a := firsts(ds), alls(ds)
		fmt.Fprintf(&b, "| %d | %v | %v | %v | %v | %v | %v | %v | %v |\n", n,
			r(sim.Percentile(f, 50)), r(sim.Percentile(f, 90)), r(sim.Percentile(f, 99)), r(sim.Percentile(f, 100)),
			r(sim.Percentile(a, 50)), r(sim.Percentile(a, 90)), r(sim.Percentile(a, 99)), r(sim.Percentile(a, 100)))
		t.Logf("n=%d measured in %v", n, time.Since(start).Round(time.Second))
	}

	dur := time.Duration(*fdHours * float64(time.Hour))
	fmt.Fprintf(&b, "\nFalse positives, 20 members, %v of virtual time per row\n\n", dur)
	fmt.Fprintln(&b, "| condition | local health | deaths /member/h | suspicions /member/h | starved node: accusations | its score | suspicions of it |")
	fmt.Fprintln(&b, "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, row := range []struct {
		name string
		loss float64
		slow time.Duration
	}{
		{"5% loss", 0.05, 0},
		{"20% loss", 0.20, 0},
		{"one node starved (1.5 s)", 0, 1500 * time.Millisecond},
		{"one node starved (1.5 s), 5% loss", 0.05, 1500 * time.Millisecond},
	} {
		for _, lhm := range []int{8, 0} {
			opts := lan
			opts.Seed = 200
			opts.Loss = row.loss
			f, err := sim.MeasureFalsePositives(opts, 20, dur, row.slow, func(cfg *engine.Config) { cfg.Membership.MaxLocalHealth = lhm })
			if err != nil {
				t.Fatal(err)
			}
			dph, sph := f.PerMemberHour()
			on := "on"
			if lhm == 0 {
				on = "off"
			}
			slow := "-"
			if row.slow > 0 {
				slow = fmt.Sprint(f.SlowSuspicions)
			}
			fmt.Fprintf(&b, "| %s | %s | %.4f | %.3f | %s | %d | %d |\n", row.name, on, dph, sph, slow, f.SlowHealth, f.SlowAccused)
		}
	}

	fmt.Fprintln(&b, "\nMessage load per member per protocol period (ping, ack, ping-req, nack, gossip; 120 periods)")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| N | steady: messages | bytes | one member crashed: messages | bytes |")
	fmt.Fprintln(&b, "| ---: | ---: | ---: | ---: | ---: |")
	for _, n := range sizes {
		opts := lan
		opts.Seed = 300 + uint64(n)
		steady, err := sim.MeasureLoad(opts, n, 120, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		crash, err := sim.MeasureLoad(opts, n, 120, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "| %d | %.2f | %.0f | %.2f | %.0f |\n", n, steady.Messages, steady.Bytes, crash.Messages, crash.Bytes)
	}
	t.Log(b.String())
}

func r(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
