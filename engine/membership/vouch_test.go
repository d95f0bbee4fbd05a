package membership

import (
	"slices"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// defended returns a node with the defences on (as the engine sets them
// when peer scoring quarantines), knowing the given peers first-hand.
func defended(t *testing.T, peers ...string) *node {
	t.Helper()
	n := newNode(t, "a", DefaultConfig())
	n.SetDefences(nil, true)
	for _, p := range peers {
		n.Handle(t0, &wire.Envelope{From: p, FromAddr: p, Members: []*wire.Member{{Name: p, Address: p, Incarnation: 1}}})
	}
	n.Events()
	n.take()
	return n
}

// relayed reports whether any message in out carries news of name, as
// piggybacked news or in a member list.
func relayed(out []sent, name string) bool {
	for _, s := range out {
		lists := [][]*wire.Member{s.env.Members}
		if j := s.env.GetJoin(); j != nil {
			lists = append(lists, j.Members)
		}
		if r := s.env.GetJoinReply(); r != nil {
			lists = append(lists, r.Members)
		}
		for _, l := range lists {
			if slices.ContainsFunc(l, func(u *wire.Member) bool { return u.Name == name }) {
				return true
			}
		}
	}
	return false
}

// pushPullTo makes n answer a push-pull from peer and returns what it
// sent.
func pushPullTo(n *node, now time.Time, peer string) []sent {
	n.Handle(now, &wire.Envelope{From: peer, FromAddr: peer, Body: &wire.Envelope_Join{Join: &wire.Join{Sync: true}}})
	return n.take()
}

func TestSecondHandMemberHeldBeforeRelay(t *testing.T) {
	n := defended(t, "b", "c")
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 1)})
	p, ok := n.Get("x-0")
	if !ok || !p.Unconfirmed() || !slices.Equal(p.Vouchers(), []string{"b"}) {
		t.Fatalf("x-0 learned from b: %+v, want unconfirmed, vouched for by b", p)
	}
	if relayed(pushPullTo(n, t0, "c"), "x-0") {
		t.Fatal("x-0 relayed in a push-pull reply before the relay delay")
	}
	n.Tick(t0.Add(time.Second))
	if relayed(n.take(), "x-0") {
		t.Fatal("x-0 piggybacked before the relay delay")
	}
	if s := n.Stats(); s.MembersHeld != 1 {
		t.Fatalf("MembersHeld %d, want 1", s.MembersHeld)
	}
	// After the delay it is relayed like any news.
	at := t0.Add(DefaultRelayDelay)
	if d := n.Deadline(); d.After(at) {
		t.Fatalf("next deadline %v, after the relay time %v", d, at)
	}
	n.Tick(at)
	if !relayed(pushPullTo(n, at, "c"), "x-0") {
		t.Fatal("x-0 not relayed after the relay delay")
	}
}

func TestHeardOrSecondVoucherRelaysAtOnce(t *testing.T) {
	n := defended(t, "b", "c")
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 2)})
	// x-0 speaks for itself: confirmed, relayed at once.
	n.Handle(t0, &wire.Envelope{From: "x-0", FromAddr: "x-0"})
	if p, _ := n.Get("x-0"); p.Unconfirmed() || !p.Heard {
		t.Fatalf("x-0 after a message from it: %+v", p)
	}
	// c vouches for x-1 too.
	n.Handle(t0, &wire.Envelope{From: "c", FromAddr: "c", Members: fakes("x", 2)[1:]})
	if p, _ := n.Get("x-1"); !slices.Equal(p.Vouchers(), []string{"b", "c"}) {
		t.Fatalf("x-1 vouchers %v, want b and c", p.Vouchers())
	}
	out := pushPullTo(n, t0, "b")
	if !relayed(out, "x-0") || !relayed(out, "x-1") {
		t.Fatal("a member heard from, or vouched for by two members, is not relayed at once")
	}
}

func TestQuarantinedVouchersMembersForgotten(t *testing.T) {
	n := defended(t, "b", "c", "f")
	n.Handle(t0, &wire.Envelope{From: "f", FromAddr: "f", Members: fakes("x", 20)})
	// x-0 answered us; c vouches for x-1 as well.
	n.Handle(t0, &wire.Envelope{From: "x-0", FromAddr: "x-0"})
	n.Handle(t0, &wire.Envelope{From: "c", FromAddr: "c", Members: fakes("x", 2)[1:]})
	n.Events()
	n.SetQuarantined(t0.Add(time.Second), "f", true)
	for i, m := range fakes("x", 20) {
		_, ok := n.Get(m.Name)
		if want := i < 2; ok != want {
			t.Fatalf("%s in the view: %v, want %v", m.Name, ok, want)
		}
	}
	if s := n.Stats(); s.ForgottenQuarantined != 18 {
		t.Fatalf("ForgottenQuarantined %d, want 18", s.ForgottenQuarantined)
	}
	removed := 0
	for _, ev := range n.Events() {
		if ev.Removed {
			removed++
		}
	}
	if removed != 18 {
		t.Fatalf("%d removal events, want 18", removed)
	}
	// The quarantined voucher's other members and the honest ones stay.
	for _, name := range []string{"b", "c", "f"} {
		if _, ok := n.Get(name); !ok {
			t.Fatalf("%s forgotten", name)
		}
	}
	// If c is quarantined too, x-1 has nobody left to vouch for it.
	n.SetQuarantined(t0.Add(time.Second), "c", true)
	if _, ok := n.Get("x-1"); ok {
		t.Fatal("x-1 kept with both its vouchers quarantined")
	}
}

// probeUntil ticks n for up to 30 s, acking its probes of the members in
// ack, until done.
func probeUntil(n *node, ack []string, done func() bool) (probed map[string]bool) {
	probed = map[string]bool{}
	for now := t0; now.Before(t0.Add(30 * time.Second)); now = now.Add(100 * time.Millisecond) {
		n.Tick(now)
		for _, s := range n.take() {
			p := s.env.GetPing()
			if p == nil {
				continue
			}
			probed[p.Target] = true
			if slices.Contains(ack, p.Target) {
				n.Handle(now, &wire.Envelope{From: p.Target, FromAddr: p.Target, Body: &wire.Envelope_Ack{Ack: &wire.Ack{Seq: p.Seq}}})
			}
		}
		if done() {
			break
		}
	}
	return probed
}

func TestFloodersMemberForgottenWhenSilent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxNewMembersPerSecond = 1
	n := newNode(t, "a", cfg)
	n.SetDefences(nil, true)
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b"})
	// b goes over its allowance: x-0 is admitted, x-1 refused.
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 2)})
	n.take()
	probed := probeUntil(n, []string{"b"}, func() bool { _, ok := n.Get("x-0"); return !ok })
	if !probed["x-0"] {
		t.Fatal("x-0 never probed")
	}
	if _, ok := n.Get("x-0"); ok {
		t.Fatal("a silent member that only a flooder vouched for stays in the view")
	}
	if s := n.Stats(); s.ForgottenUnanswered != 1 || s.Suspected != 0 {
		t.Fatalf("ForgottenUnanswered %d, Suspected %d: want 1, 0", s.ForgottenUnanswered, s.Suspected)
	}
	// Second-hand news of it is ignored now; it comes back when it speaks.
	n.Handle(t0.Add(time.Minute), &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 1)})
	if _, ok := n.Get("x-0"); ok {
		t.Fatal("a forgotten member taken back from second-hand news")
	}
	n.Handle(t0.Add(time.Minute), &wire.Envelope{From: "x-0", FromAddr: "x-0"})
	if p, ok := n.Get("x-0"); !ok || !p.Heard {
		t.Fatalf("x-0 not back after a message from it: %+v %v", p, ok)
	}
}

// A member an honest member told of, and which does not answer, is
// suspected as usual, not forgotten: forgotten members are not pinged
// again, and a partition between members that knew each other second-hand
// would never heal.
func TestHonestlyVouchedMemberSuspectedWhenSilent(t *testing.T) {
	n := defended(t, "b")
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 1)})
	n.take()
	probeUntil(n, []string{"b"}, func() bool { p, _ := n.Get("x-0"); return p.State != wire.State_ALIVE })
	if p, ok := n.Get("x-0"); !ok || p.State != wire.State_SUSPECT {
		t.Fatalf("x-0: %+v in view %v, want suspect", p, ok)
	}
	if s := n.Stats(); s.ForgottenUnanswered != 0 {
		t.Fatalf("ForgottenUnanswered %d, want 0", s.ForgottenUnanswered)
	}
}

func TestWithoutDefencesNothingHeld(t *testing.T) {
	n := newNode(t, "a", DefaultConfig(), "b", "c", "f")
	n.take()
	n.Handle(t0, &wire.Envelope{From: "f", FromAddr: "f", Members: fakes("x", 3)})
	if p, _ := n.Get("x-0"); p.Unconfirmed() {
		t.Fatal("defences off: a second-hand member is marked unconfirmed")
	}
	if !relayed(pushPullTo(n, t0, "c"), "x-0") {
		t.Fatal("defences off: a second-hand member is held back")
	}
	n.SetQuarantined(t0, "f", true)
	if _, ok := n.Get("x-0"); !ok {
		t.Fatal("defences off: a member forgotten with its voucher")
	}
}
