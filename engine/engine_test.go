package engine_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// cluster starts n nodes named n1..n{n} that join through n1, and waits
// until every node sees every other.
func cluster(t *testing.T, opts sim.Options, n int, configure func(*engine.Config)) *sim.Cluster {
	t.Helper()
	c := sim.New(opts)
	for i := 1; i <= n; i++ {
		if _, err := c.AddNode(fmt.Sprintf("n%d", i), configure); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range c.Nodes()[1:] {
		nd.Join("n1")
	}
	formed := func() bool {
		for _, nd := range c.Nodes() {
			if len(live(nd)) != n {
				return false
			}
		}
		return true
	}
	// Check every 100 ms of virtual time: the check itself is O(n²).
	for !formed() {
		if c.Now().Sub(sim.Epoch) > 10*time.Minute {
			t.Fatalf("cluster of %d did not form in 10 virtual minutes", n)
		}
		if err := c.RunFor(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("cluster of %d formed after %v of virtual time", n, c.Now().Sub(sim.Epoch))
	return c
}

func live(nd *sim.Node) []string {
	var out []string
	for _, m := range nd.Engine.Members() {
		if m.Live() {
			out = append(out, m.Name)
		}
	}
	return out
}

func state(nd *sim.Node, name string) wire.State {
	for _, m := range nd.Engine.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return -1
}

func holds(nd *sim.Node, key string, v store.Version) bool {
	r, ok := nd.Get(key)
	return ok && r.Version == v
}

func TestDirectMailReachesEveryMember(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 1, Latency: time.Millisecond}, 5, nil)
	n1 := c.Nodes()[0]
	rec, err := n1.Put("greeting", "hello")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := c.RunUntil(time.Second, func() bool {
		for _, nd := range c.Nodes() {
			if !holds(nd, "greeting", rec.Version) {
				return false
			}
		}
		return true
	})
	if err != nil || !ok {
		t.Fatalf("write did not reach every node: %v", err)
	}
	// One round trip of latency: direct mail goes out at once.
	if d := c.Now().Sub(sim.Epoch); d > time.Minute {
		t.Fatalf("took %v", d)
	}
	if s := n1.Engine.Stats().Mail; s.MailsSent != 4 {
		t.Fatalf("n1 sent %d mails, want one per peer (4)", s.MailsSent)
	}
	if err := c.RunFor(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if s := n1.Engine.Stats().Mail; s.Acked != 4 || s.OutboxRecords != 0 {
		t.Fatalf("after acks: %+v", s)
	}
}

func TestOutboxDeliversAfterRestart(t *testing.T) {
	// Long suspicion so the crashed node is not declared dead while away.
	slow := func(cfg *engine.Config) { cfg.Membership.SuspicionTimeout = time.Hour }
	c := cluster(t, sim.Options{Seed: 2, Latency: time.Millisecond}, 3, slow)
	n1, n3 := c.Nodes()[0], c.Nodes()[2]
	n3.Crash()
	var last store.Record
	for i := range 10 {
		r, err := n1.Put(fmt.Sprintf("k%d", i), "v")
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	if err := c.RunFor(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if s := n1.Engine.Stats().Mail; s.OutboxRecords != 10 {
		t.Fatalf("outbox holds %d records, want 10 (%+v)", s.OutboxRecords, s)
	}
	if err := n3.Restart(); err != nil {
		t.Fatal(err)
	}
	ok, err := c.RunUntil(time.Minute, func() bool { return holds(n3, "k9", last.Version) && n1.Engine.Stats().Mail.OutboxRecords == 0 })
	if err != nil || !ok {
		t.Fatalf("outbox not delivered after restart: %+v", n1.Engine.Stats().Mail)
	}
	for i := range 10 {
		if _, ok := n3.Get(fmt.Sprintf("k%d", i)); !ok {
			t.Fatalf("k%d missing on restarted node", i)
		}
	}
}

func TestOutboxSurvivesSenderRestart(t *testing.T) {
	slow := func(cfg *engine.Config) { cfg.Membership.SuspicionTimeout = time.Hour }
	c := cluster(t, sim.Options{Seed: 3, Latency: time.Millisecond}, 2, slow)
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	n2.Crash()
	r, err := n1.Put("k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The sender restarts too: its outbox comes back from the store.
	n1.Crash()
	if err := n1.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := n1.Engine.Stats().Mail.OutboxRecords; got != 1 {
		t.Fatalf("reloaded outbox holds %d, want 1", got)
	}
	if err := n2.Restart(); err != nil {
		t.Fatal(err)
	}
	n2.Join("n1")
	ok, err := c.RunUntil(time.Minute, func() bool { return holds(n2, "k", r.Version) })
	if err != nil || !ok {
		t.Fatal("outbox reloaded after restart was not delivered")
	}
}

func TestOutboxDroppedWhenPeerDeclaredDead(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			fast := func(cfg *engine.Config) { cfg.Membership.SuspicionTimeout = 2 * time.Second }
			c := cluster(t, sim.Options{Seed: 4, Latency: time.Millisecond, Signed: signed}, 3, fast)
			n1, n3 := c.Nodes()[0], c.Nodes()[2]
			n3.Crash()
			if _, err := n1.Put("k", "v"); err != nil {
				t.Fatal(err)
			}
			ok, err := c.RunUntil(time.Minute, func() bool { return state(n1, "n3") == wire.State_DEAD })
			if err != nil || !ok {
				t.Fatal("crashed node never declared dead")
			}
			if s := n1.Engine.Stats().Mail; s.OutboxRecords != 0 || s.Dropped == 0 {
				t.Fatalf("outbox not dropped for dead peer: %+v", s)
			}
		})
	}
}

func TestOutboxBound(t *testing.T) {
	cfgf := func(cfg *engine.Config) {
		cfg.Membership.SuspicionTimeout = time.Hour
		cfg.Mail.OutboxMaxRecords = 5
	}
	c := cluster(t, sim.Options{Seed: 5, Latency: time.Millisecond}, 2, cfgf)
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	n2.Crash()
	for i := range 8 {
		if _, err := n1.Put(fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RunFor(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := n1.Engine.Stats().Mail
	if s.OutboxRecords != 5 || s.Dropped != 3 {
		t.Fatalf("bound of 5: outbox %d dropped %d, want 5 and 3", s.OutboxRecords, s.Dropped)
	}
}

func TestSuspectRefutesAndStaysAlive(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			// Without indirect probes: n3 would otherwise probe n2 for n1 and keep
			// it alive (see sim/failuredetection_test.go for that case).
			direct := func(cfg *engine.Config) { cfg.Membership.IndirectChecks = 0 }
			c := cluster(t, sim.Options{Seed: 6, Latency: time.Millisecond, Signed: signed}, 3, direct)
			n1, n2 := c.Nodes()[0], c.Nodes()[1]
			inc := n2.Engine.Self().Incarnation
			// n1 cannot reach n2 for a while: it suspects it, hears nothing, and
			// the suspicion reaches n2 through n3, which refutes it.
			c.Cut("n1", "n2")
			ok, err := c.RunUntil(time.Minute, func() bool { return state(n1, "n2") == wire.State_SUSPECT })
			if err != nil || !ok {
				t.Fatal("n1 never suspected n2")
			}
			c.Mend("n1", "n2")
			ok, err = c.RunUntil(time.Minute, func() bool {
				return n2.Engine.Self().Incarnation > inc && state(n1, "n2") == wire.State_ALIVE
			})
			if err != nil || !ok {
				t.Fatalf("n2 did not refute: n1 sees %v, n2 incarnation %d", state(n1, "n2"), n2.Engine.Self().Incarnation)
			}
		})
	}
}

func TestLeaveSpreads(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			c := cluster(t, sim.Options{Seed: 7, Latency: time.Millisecond, Signed: signed}, 4, nil)
			n4 := c.Nodes()[3]
			n4.Leave()
			ok, err := c.RunUntil(10*time.Second, func() bool {
				for _, nd := range c.Nodes()[:3] {
					if state(nd, "n4") != wire.State_LEFT {
						return false
					}
				}
				acked, sent := n4.Engine.LeaveAcked()
				return sent == 3 && acked == 3
			})
			if err != nil || !ok {
				t.Fatal("leave did not reach every member")
			}
		})
	}
}

func TestRefusesForeignClusterAndBadRecords(t *testing.T) {
	st := memstore.New()
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a"
	cfg.MaxValueSize = 10
	now := sim.Epoch
	e, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, 2)), now)
	if err != nil {
		t.Fatal(err)
	}
	err = e.Step(now, &wire.Envelope{Cluster: "other", From: "x"})
	if !errors.Is(err, engine.ErrForeignCluster) {
		t.Fatalf("foreign cluster: %v", err)
	}
	future := uint64(now.Add(time.Hour).UnixMilli()) << 16
	mail := &wire.Envelope{Cluster: cfg.Cluster, From: "b", FromAddr: "b", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{
		{Key: []byte("ok"), Value: []byte("v"), Hlc: uint64(now.UnixMilli()) << 16, Node: 2},
		{Key: []byte("big"), Value: make([]byte, 11), Hlc: uint64(now.UnixMilli()) << 16, Node: 2},
		{Key: []byte("future"), Value: []byte("v"), Hlc: future, Node: 2},
		{Key: nil, Value: []byte("v"), Hlc: 1, Node: 2},
	}}}}
	err = e.Step(now, mail)
	if !errors.Is(err, engine.ErrBadRecord) {
		t.Fatalf("bad records: %v", err)
	}
	if _, ok, _ := st.Get([]byte("ok")); !ok {
		t.Fatal("the valid record in the mail was not applied")
	}
	for _, k := range []string{"big", "future"} {
		if _, ok, _ := st.Get([]byte(k)); ok {
			t.Fatalf("refused record %q was stored", k)
		}
	}
	if s := e.Stats(); s.RecordsRefused != 3 || s.Refused != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The mail is still acknowledged, so the sender does not retry forever
	// (once the acknowledgement's batching delay has passed).
	if err := e.Tick(now.Add(engine.DefaultConfig().Mail.AckDelay)); err != nil {
		t.Fatal(err)
	}
	rd := e.Ready()
	var acks []uint64
	for _, m := range rd.Messages {
		if a := m.Env.GetMailAck(); a != nil {
			acks = append(acks, a.Id)
		}
	}
	if len(acks) != 1 || acks[0] != 1 {
		t.Fatalf("want one MailAck of mail 1, got %v", rd.Messages)
	}
}

func TestRestartRaisesIncarnationAndKeepsClock(t *testing.T) {
	st := memstore.New()
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a"
	now := sim.Epoch
	e1, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, 2)), now)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := e1.Write(now, []byte("k"), []byte("v1"), false)
	if err != nil {
		t.Fatal(err)
	}
	// Restart with the wall clock set 300 ms back, within the offset bound.
	back := now.Add(-300 * time.Millisecond)
	e2, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, 2)), back)
	if err != nil {
		t.Fatal(err)
	}
	if e2.Self().Incarnation <= e1.Self().Incarnation {
		t.Fatalf("incarnation %d after restart, was %d", e2.Self().Incarnation, e1.Self().Incarnation)
	}
	r2, err := e2.Write(back, []byte("k"), []byte("v2"), false)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Version.Compare(r1.Version) <= 0 {
		t.Fatalf("write after restart %v not newer than before %v", r2.Version, r1.Version)
	}
	// Restarted with the clock an hour back, the node would issue versions
	// an hour ahead of its wall clock, which peers refuse: it refuses the
	// write, says until when, and writes again once the wall clock is past
	// its high-water mark.
	back = now.Add(-time.Hour)
	e3, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, 2)), back)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e3.Write(back, []byte("k"), []byte("v3"), false); !errors.Is(err, engine.ErrClockOffset) || !strings.Contains(err.Error(), "ahead of its wall clock") {
		t.Fatalf("write with the high-water mark an hour ahead: %v", err)
	}
	later := now.Add(time.Second)
	r3, err := e3.Write(later, []byte("k"), []byte("v3"), false)
	if err != nil {
		t.Fatalf("write once the wall clock passed the high-water mark: %v", err)
	}
	if r3.Version.Compare(r2.Version) <= 0 {
		t.Fatalf("write %v not newer than %v", r3.Version, r2.Version)
	}
}

func TestSameSeedSameRun(t *testing.T) {
	run := func(seed uint64) string {
		c := cluster(t, sim.Options{Seed: seed, Latency: time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.05}, 6, nil)
		for i := range 20 {
			if _, err := c.Nodes()[i%6].Put(fmt.Sprintf("k%d", i), "v"); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.RunFor(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%+v %v", c.Stats(), c.Now())
	}
	a, b, d := run(9), run(9), run(10)
	if a != b {
		t.Fatalf("same seed, different runs:\n%s\n%s", a, b)
	}
	if a == d {
		t.Fatalf("different seeds, same run: %s", a)
	}
}

// TestSeedRestartHeals: the node every other joined through restarts, after
// a graceful leave or a crash, with no seeds of its own. It rejoins through
// the members it saved, and they admit it again: a new incarnation
// supersedes "left". Every member sees every other alive and writes flow
// both ways within 2 s of virtual time (the target on real agents is 10 s;
// without the saved members, the others' reconnect pings alone took 6.9 s
// after a leave).
func TestSeedRestartHeals(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		c := cluster(t, sim.Options{Seed: 3, Latency: time.Millisecond}, 3, nil)
		n1, n2 := c.Nodes()[0], c.Nodes()[1]
		if err := c.RunFor(2 * time.Second); err != nil { // the member list is saved
			t.Fatal(err)
		}
		if graceful {
			if err := n1.Leave(); err != nil {
				t.Fatal(err)
			}
			ok, err := c.RunUntil(5*time.Second, func() bool { return state(n2, "n1") == wire.State_LEFT })
			if err != nil || !ok {
				t.Fatalf("graceful=%v: the leave did not arrive", graceful)
			}
		}
		// Down for a second: nothing in flight reaches the new instance.
		n1.Crash()
		if err := c.RunFor(time.Second); err != nil {
			t.Fatal(err)
		}
		if err := n1.Restart(); err != nil {
			t.Fatal(err)
		}
		start := c.Now()
		ok, err := c.RunUntil(2*time.Second, func() bool {
			for _, nd := range c.Nodes() {
				if len(live(nd)) != 3 || state(nd, "n1") != wire.State_ALIVE {
					return false
				}
			}
			return true
		})
		if err != nil || !ok {
			t.Fatalf("graceful=%v: not healed within 2 s: n1 sees %v, n2 sees n1 %v", graceful, live(n1), state(n2, "n1"))
		}
		t.Logf("graceful=%v: healed after %v", graceful, c.Now().Sub(start))
		r1, err := n1.Put("from-n1", "v")
		if err != nil {
			t.Fatal(err)
		}
		r2, err := n2.Put("from-n2", "v")
		if err != nil {
			t.Fatal(err)
		}
		ok, err = c.RunUntil(5*time.Second, func() bool { return holds(n2, "from-n1", r1.Version) && holds(n1, "from-n2", r2.Version) })
		if err != nil || !ok {
			t.Fatalf("graceful=%v: writes do not flow both ways", graceful)
		}
	}
}

// TestFutureRecordStaysRefused: a record refused because its version is
// beyond the clock skew bound is refused again when it comes back after
// time has caught up with it: it was written by a wrong clock and would
// overwrite writes acknowledged after it.
func TestFutureRecordStaysRefused(t *testing.T) {
	st := memstore.New()
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a"
	// A node remembers refusals only while it trusts its own clock; with
	// no offset bound it always does (here it has no peer to measure it).
	cfg.MaxClockOffset = 0
	now := sim.Epoch
	e, err := engine.New(cfg, st, rand.New(rand.NewPCG(1, 2)), now)
	if err != nil {
		t.Fatal(err)
	}
	ahead := uint64(now.Add(90*time.Second).UnixMilli()) << 16
	mail := func(id uint64) *wire.Envelope {
		return &wire.Envelope{Cluster: cfg.Cluster, From: "b", FromAddr: "b", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: id, Records: []*wire.Record{
			{Key: []byte("k"), Value: []byte("from the future"), Hlc: ahead, Node: 2},
		}}}}
	}
	if err := e.Step(now, mail(1)); !errors.Is(err, engine.ErrBadRecord) {
		t.Fatalf("90 s ahead: %v", err)
	}
	later := now.Add(100 * time.Second)
	if err := e.Step(later, mail(2)); !errors.Is(err, engine.ErrBadRecord) || !strings.Contains(err.Error(), "refused earlier") {
		t.Fatalf("the same record 100 s later: %v", err)
	}
	if _, ok, _ := st.Get([]byte("k")); ok {
		t.Fatal("a record refused for its future version was stored later")
	}
}
