package membership

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type sent struct {
	to  string
	env *wire.Envelope
}

// node is a Membership whose messages are collected rather than sent.
type node struct {
	*Membership
	out []sent
}

func newNode(t *testing.T, name string, cfg Config, peers ...string) *node {
	t.Helper()
	n := &node{}
	n.Membership = New(cfg, Member{Name: name, Addr: name, NodeID: 1, Incarnation: 1, Since: t0}, rand.New(rand.NewPCG(1, 2)), func(addr string, env *wire.Envelope) {
		env.From, env.FromAddr = name, name
		n.Piggyback(env)
		n.out = append(n.out, sent{addr, env})
	})
	for _, p := range peers {
		n.Handle(t0, &wire.Envelope{From: p, FromAddr: p, Members: []*wire.Member{{Name: p, Address: p, Incarnation: 1}}})
	}
	n.Events()
	return n
}

func (n *node) take() []sent {
	out := n.out
	n.out = nil
	return out
}

func TestSuspicionTimeoutFallsWithConfirmations(t *testing.T) {
	lo, hi := 5*time.Second, 20*time.Second
	if got := suspicionTimeout(lo, hi, 0, 3); got != hi {
		t.Fatalf("no confirmation: %v, want the maximum %v", got, hi)
	}
	if got := suspicionTimeout(lo, hi, 3, 3); got != lo {
		t.Fatalf("K confirmations: %v, want the minimum %v", got, lo)
	}
	prev := hi
	for c := 1; c <= 3; c++ {
		got := suspicionTimeout(lo, hi, c, 3)
		if got >= prev || got < lo {
			t.Fatalf("%d confirmations: %v, after %v", c, got, prev)
		}
		prev = got
	}
	// log(2)/log(4) = 1/2: one confirmation of three takes half the way.
	if got := suspicionTimeout(lo, hi, 1, 3); got != 12500*time.Millisecond {
		t.Fatalf("one confirmation: %v, want 12.5s", got)
	}
	if got := suspicionTimeout(lo, hi, 0, 0); got != lo {
		t.Fatalf("nobody to confirm: %v, want the minimum", got)
	}
}

func TestOrderingFollowsSWIM(t *testing.T) {
	A, S, D, L := wire.State_ALIVE, wire.State_SUSPECT, wire.State_DEAD, wire.State_LEFT
	for _, c := range []struct {
		cur     wire.State
		curInc  uint64
		upd     wire.State
		updInc  uint64
		applies bool
	}{
		{A, 1, A, 1, false}, {A, 1, A, 2, true},
		{A, 1, S, 1, true}, {A, 2, S, 1, false},
		{S, 1, A, 1, false}, {S, 1, A, 2, true},
		{S, 1, S, 1, false}, {S, 1, S, 2, true},
		{A, 1, D, 1, true}, {S, 1, D, 1, true}, {A, 2, D, 1, false},
		{D, 1, A, 1, false}, {D, 1, A, 2, true}, {D, 1, S, 1, false}, {D, 1, S, 2, true},
		{D, 1, L, 1, false}, {L, 1, D, 2, true}, {A, 1, L, 1, true},
	} {
		got := overrides(&wire.Member{State: c.upd, Incarnation: c.updInc}, &Member{State: c.cur, Incarnation: c.curInc})
		if got != c.applies {
			t.Errorf("%v@%d over %v@%d: %v, want %v", c.upd, c.updInc, c.cur, c.curInc, got, c.applies)
		}
	}
}

func TestPingReqForwardsAckOrNacks(t *testing.T) {
	b := newNode(t, "b", DefaultConfig(), "a", "c")
	// a asks b to probe c.
	b.Handle(t0, &wire.Envelope{From: "a", FromAddr: "a", Body: &wire.Envelope_PingReq{PingReq: &wire.PingReq{Seq: 77, Target: "c", TargetAddress: "c"}}})
	out := b.take()
	if len(out) != 1 || out[0].to != "c" || out[0].env.GetPing() == nil {
		t.Fatalf("b did not ping c: %v", out)
	}
	seq := out[0].env.GetPing().Seq
	// c answers: b forwards the ack to a with a's seq.
	b.Handle(t0.Add(10*time.Millisecond), &wire.Envelope{From: "c", FromAddr: "c", Body: &wire.Envelope_Ack{Ack: &wire.Ack{Seq: seq}}})
	out = b.take()
	if len(out) != 1 || out[0].to != "a" || out[0].env.GetAck().GetSeq() != 77 {
		t.Fatalf("b did not forward the ack: %v", out)
	}

	// Again, and c stays silent: a nack goes to a before a's own deadline.
	b.Handle(t0, &wire.Envelope{From: "a", FromAddr: "a", Body: &wire.Envelope_PingReq{PingReq: &wire.PingReq{Seq: 78, Target: "c", TargetAddress: "c"}}})
	b.take()
	b.Tick(t0.Add(DefaultConfig().ProbeTimeout * 4 / 5))
	var nack bool
	for _, s := range b.take() {
		if s.to == "a" && s.env.GetNack().GetSeq() == 78 {
			nack = true
		}
	}
	if !nack {
		t.Fatal("no nack for a silent target")
	}
}

func TestLocalHealthRisesWithoutNacksAndStretchesTimers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GossipNodes = 0 // only probe traffic
	a := newNode(t, "a", cfg, "b", "c", "d", "e")
	now := t0
	a.Tick(now)
	// The first probe gets no ack; ping-reqs go to 3 helpers; no nack comes
	// back: each missing nack raises the score.
	probe := a.take()
	if len(probe) != 1 || probe[0].env.GetPing() == nil {
		t.Fatalf("want one ping, got %v", probe)
	}
	now = now.Add(cfg.ProbeTimeout)
	a.Tick(now)
	reqs := 0
	for _, s := range a.take() {
		if s.env.GetPingReq() != nil {
			reqs++
		}
	}
	if reqs != 3 {
		t.Fatalf("%d ping-reqs, want k=3", reqs)
	}
	now = t0.Add(cfg.ProbeInterval)
	a.Tick(now)
	if a.Health() != 3 {
		t.Fatalf("health %d after a probe with 3 missing nacks, want 3", a.Health())
	}
	if s := a.Stats(); s.Suspected != 1 || s.ProbesFailed != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The next probe's timers are stretched by health+1.
	next := a.take()
	var ping *wire.Ping
	for _, s := range next {
		if p := s.env.GetPing(); p != nil {
			ping = p
		}
	}
	if ping == nil {
		t.Fatalf("no next probe: %v", next)
	}
	if d := a.Deadline().Sub(now); d != 4*cfg.ProbeTimeout {
		t.Fatalf("next timer in %v, want the probe timeout stretched 4x (%v)", d, 4*cfg.ProbeTimeout)
	}
	// A timely direct ack lowers the score by one.
	a.Handle(now.Add(time.Millisecond), &wire.Envelope{From: ping.Target, FromAddr: ping.Target, Body: &wire.Envelope_Ack{Ack: &wire.Ack{Seq: ping.Seq}}})
	if a.Health() != 2 {
		t.Fatalf("health %d after a successful probe, want 2", a.Health())
	}
}

func TestNacksKeepHealthAndConfirmationsShortenSuspicion(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GossipNodes = 0 // only probe traffic
	a := newNode(t, "a", cfg, "b", "c", "d", "e")
	a.Tick(t0)
	target := a.take()[0].env.GetPing().GetTarget()
	a.Tick(t0.Add(cfg.ProbeTimeout))
	for _, s := range a.take() {
		if r := s.env.GetPingReq(); r != nil {
			a.Handle(t0.Add(cfg.ProbeTimeout+10*time.Millisecond), &wire.Envelope{From: s.to, FromAddr: s.to, Body: &wire.Envelope_Nack{Nack: &wire.Nack{Seq: r.Seq}}})
		}
	}
	now := t0.Add(cfg.ProbeInterval)
	a.Tick(now)
	if a.Health() != 0 {
		t.Fatalf("health %d although every helper sent a nack", a.Health())
	}
	if m, _ := a.Get(target); m.State != wire.State_SUSPECT {
		t.Fatalf("%s is %v after a failed probe", target, m.State)
	}
	// Five members: n-2 = 3 may confirm; with none the timeout is the
	// maximum, SuspicionMaxMult times the minimum.
	lo := cfg.SuspicionTimeout // log10(5) < 1
	s := a.suspicions[target]
	if got, want := s.deadline.Sub(now), lo*time.Duration(cfg.SuspicionMaxMult); got != want {
		t.Fatalf("unconfirmed suspicion lasts %v, want %v", got, want)
	}
	var others []string
	for _, n := range []string{"b", "c", "d", "e"} {
		if n != target {
			others = append(others, n)
		}
	}
	for _, from := range others {
		a.Handle(now, &wire.Envelope{From: from, FromAddr: from, Members: []*wire.Member{{Name: target, Address: target, Incarnation: 1, State: wire.State_SUSPECT, From: from}}})
	}
	if got := s.deadline.Sub(now); got != lo {
		t.Fatalf("suspicion confirmed by %d lasts %v, want the minimum %v", len(others), got, lo)
	}
	a.Tick(now.Add(lo))
	if m, _ := a.Get(target); m.State != wire.State_DEAD {
		t.Fatalf("%s is %v after the suspicion timeout", target, m.State)
	}
}

func TestRefutationRaisesIncarnation(t *testing.T) {
	a := newNode(t, "a", DefaultConfig(), "b")
	a.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: []*wire.Member{{Name: "a", Incarnation: 1, State: wire.State_SUSPECT, From: "b"}}})
	if a.Self().Incarnation != 2 || a.Self().State != wire.State_ALIVE {
		t.Fatalf("self after accusation: %+v", a.Self())
	}
	env := &wire.Envelope{}
	a.Piggyback(env)
	found := false
	for _, u := range env.Members {
		if u.Name == "a" && u.State == wire.State_ALIVE && u.Incarnation == 2 {
			found = true
		}
	}
	if !found {
		t.Fatalf("refutation not piggybacked: %v", env.Members)
	}
	// An old accusation does nothing.
	a.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: []*wire.Member{{Name: "a", Incarnation: 1, State: wire.State_DEAD}}})
	if a.Self().Incarnation != 2 {
		t.Fatalf("stale accusation raised the incarnation to %d", a.Self().Incarnation)
	}
}

func TestReapForgetsAndNameReturns(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReapTimeout = time.Minute
	a := newNode(t, "a", cfg, "b", "c")
	a.Handle(t0, &wire.Envelope{From: "c", FromAddr: "c", Members: []*wire.Member{{Name: "b", Address: "b", Incarnation: 5, State: wire.State_DEAD}}})
	a.Events()
	a.Tick(t0.Add(time.Minute))
	if _, ok := a.Get("b"); ok {
		t.Fatal("b not reaped after ReapTimeout")
	}
	ev := a.Events()
	if len(ev) != 1 || !ev[0].Removed || ev[0].Member.Name != "b" {
		t.Fatalf("events %+v", ev)
	}
	// Old news of its death does not bring it back; its own alive does, at
	// any incarnation.
	a.Handle(t0, &wire.Envelope{From: "c", FromAddr: "c", Members: []*wire.Member{{Name: "b", Address: "b", Incarnation: 5, State: wire.State_DEAD}}})
	if _, ok := a.Get("b"); ok {
		t.Fatal("a dead update re-created a reaped member")
	}
	a.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: []*wire.Member{{Name: "b", Address: "b", Incarnation: 1}}})
	if m, ok := a.Get("b"); !ok || m.State != wire.State_ALIVE {
		t.Fatalf("reaped name did not join again: %+v %v", m, ok)
	}
}

func TestBroadcastQueueNewestLeastSentFirst(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxPiggyback = 2
	a := newNode(t, "a", cfg, "b", "c", "d")
	for range 20 { // drain the join news
		a.Piggyback(&wire.Envelope{})
	}
	a.enqueue(&wire.Member{Name: "b", State: wire.State_SUSPECT, Incarnation: 1})
	a.enqueue(&wire.Member{Name: "c", State: wire.State_SUSPECT, Incarnation: 1})
	a.enqueue(&wire.Member{Name: "b", State: wire.State_DEAD, Incarnation: 1}) // replaces b's suspicion
	env := &wire.Envelope{}
	a.Piggyback(env)
	if len(env.Members) != 2 || env.Members[0].Name != "b" || env.Members[0].State != wire.State_DEAD || env.Members[1].Name != "c" {
		t.Fatalf("piggybacked %v", env.Members)
	}
}

func TestGossipSendsQueuedNewsOnlyWhileThereIsSome(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ProbeInterval = time.Hour // keep probes out of the way
	cfg.PushPullInterval = 0
	a := newNode(t, "a", cfg, "b", "c", "d", "e")
	a.Tick(t0)
	a.take()
	for range 100 {
		now := a.Deadline()
		if now.Sub(t0) > time.Minute {
			break
		}
		a.Tick(now)
		for _, s := range a.take() {
			if s.env.Body != nil {
				continue
			}
			if len(s.env.Members) == 0 {
				t.Fatalf("empty gossip message to %s", s.to)
			}
		}
	}
	if len(a.queue) != 0 {
		t.Fatalf("%d updates still queued after a minute of gossip", len(a.queue))
	}
	if d := a.Deadline(); d.Sub(t0) < time.Hour {
		t.Fatalf("with nothing to gossip the next tick is at %v, before the probe ends", d.Sub(t0))
	}
}
