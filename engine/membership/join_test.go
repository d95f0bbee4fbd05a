package membership

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

func settings(maxValue uint64) *wire.Settings {
	return &wire.Settings{Protocol: wire.ProtocolVersion, MaxValueSize: maxValue, TombstoneGraceMs: 7 * 24 * 3600 * 1000, Signing: "none"}
}

// deliver hands every message a sent to b (those addressed to b), and
// returns the rest.
func deliver(now time.Time, out []sent, to *node) (rest []sent, errs []error) {
	for _, s := range out {
		if s.to != to.self.Addr {
			rest = append(rest, s)
			continue
		}
		if _, err := to.Handle(now, s.env); err != nil {
			errs = append(errs, err)
		}
	}
	return rest, errs
}

func TestIncompatibleSettingsRefusedOnBothSides(t *testing.T) {
	seed := newNode(t, "seed", DefaultConfig())
	seed.SetSettings(settings(1024))
	joiner := newNode(t, "joiner", DefaultConfig())
	joiner.SetSettings(settings(1 << 20))
	joiner.Join(t0, []string{"seed"})
	_, errs := deliver(t0, joiner.take(), seed)
	if len(errs) != 1 || !errors.Is(errs[0], ErrIncompatible) || !strings.Contains(errs[0].Error(), "max-value-size") {
		t.Fatalf("seed side: %v", errs)
	}
	if _, ok := seed.Get("joiner"); ok {
		t.Fatal("the seed admitted a joiner with another max-value-size")
	}
	_, errs = deliver(t0, seed.take(), joiner)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "max-value-size") {
		t.Fatalf("joiner side: %v", errs)
	}
	if joiner.Joined() || !strings.Contains(joiner.JoinError(), "max-value-size: seed 1024 bytes, joiner 1048576 bytes") {
		t.Fatalf("joined %v, error %q", joiner.Joined(), joiner.JoinError())
	}
	if _, ok := joiner.Get("seed"); ok {
		t.Fatal("the joiner believed the member list of a seed that refused it")
	}
}

func TestJoinErrorNamesTheCause(t *testing.T) {
	cfg := DefaultConfig()
	a := newNode(t, "a", cfg)
	a.Join(t0, []string{"s1"})
	if a.Joined() || a.JoinError() != "" {
		t.Fatalf("before any answer could come: joined %v, error %q", a.Joined(), a.JoinError())
	}
	a.Tick(a.Deadline())
	a.Tick(a.Deadline())
	if !strings.Contains(a.JoinError(), "no answer from seeds s1 after") {
		t.Fatalf("error %q", a.JoinError())
	}
	a.Refused("s1", "this node requires encryption")
	if !strings.Contains(a.JoinError(), "s1 refused this node's messages: this node requires encryption") {
		t.Fatalf("error %q", a.JoinError())
	}
	// A refusal explains the attempt it answered; the next attempt's
	// silence does not overwrite it with "no answer".
	a.Tick(a.Deadline())
	if !strings.Contains(a.JoinError(), "refused") {
		t.Fatalf("error %q", a.JoinError())
	}
	// Refusals from strangers change nothing.
	a.Refused("x", "whatever")
	if strings.Contains(a.JoinError(), "whatever") {
		t.Fatalf("error %q", a.JoinError())
	}
}

// TestLeftMemberComesBack: a member that left and started again, at a
// higher incarnation, is admitted again; and members keep pinging left
// members, so the restarted one is found even if it contacts nobody.
func TestLeftMemberComesBack(t *testing.T) {
	cfg := DefaultConfig()
	a := newNode(t, "a", cfg, "b")
	a.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: []*wire.Member{{Name: "b", Address: "b", Incarnation: 2, State: wire.State_LEFT}}})
	if m, _ := a.Get("b"); m.State != wire.State_LEFT {
		t.Fatalf("b is %v", m.State)
	}
	a.take()
	now := t0
	pinged := false
	for range 100 {
		now = a.Deadline()
		a.Tick(now)
		for _, s := range a.take() {
			if s.to == "b" && s.env.GetPing() != nil {
				pinged = true
			}
		}
		if pinged {
			break
		}
	}
	if !pinged || now.Sub(t0) > 2*cfg.ReconnectInterval {
		t.Fatalf("a left member was not pinged within %v (pinged %v)", now.Sub(t0), pinged)
	}
	// b started again at incarnation 3 and answers.
	b := New(cfg, Member{Name: "b", Addr: "b", NodeID: 2, Incarnation: 3, Since: now}, rand.New(rand.NewPCG(3, 4)), func(string, *wire.Envelope) {})
	a.Handle(now, &wire.Envelope{From: "b", FromAddr: "b", Members: []*wire.Member{b.Self().toWire()}, Body: &wire.Envelope_Ack{Ack: &wire.Ack{}}})
	if m, _ := a.Get("b"); m.State != wire.State_ALIVE || m.Incarnation != 3 {
		t.Fatalf("b is %v at %d after it came back", m.State, m.Incarnation)
	}
}

// TestRejoinThroughRememberedMembers: a node restarted without seeds joins
// through the addresses it remembers, and stops once it has a live peer.
func TestRejoinThroughRememberedMembers(t *testing.T) {
	a := newNode(t, "a", DefaultConfig())
	a.Rejoin(t0, []string{"b", "c", "a"})
	if !a.Joined() {
		t.Fatal("remembered members alone must not make the node count as not joined")
	}
	a.Tick(t0)
	got := map[string]bool{}
	for _, s := range a.take() {
		if s.env.GetJoin() != nil {
			got[s.to] = true
		}
	}
	if !got["b"] || !got["c"] || got["a"] {
		t.Fatalf("joins went to %v", got)
	}
	a.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Body: &wire.Envelope_JoinReply{JoinReply: &wire.JoinReply{
		Members: []*wire.Member{{Name: "b", Address: "b", Incarnation: 1}, {Name: "c", Address: "c", Incarnation: 1}},
	}}})
	if a.NumLive() != 3 {
		t.Fatalf("%d live after the reply", a.NumLive())
	}
	for range 20 {
		a.Tick(a.Deadline())
	}
	for _, s := range a.take() {
		if j := s.env.GetJoin(); j != nil && !j.Sync {
			t.Fatalf("join retried to %s after joining", s.to)
		}
	}
}

func TestSampleDrawsLiveMembersUniformly(t *testing.T) {
	var peers []string
	for i := range 40 {
		peers = append(peers, string(rune('A'+i)))
	}
	a := newNode(t, "self", DefaultConfig(), peers...)
	// A quarter of them dead.
	for _, p := range peers[:10] {
		a.Handle(t0, &wire.Envelope{Members: []*wire.Member{{Name: p, Address: p, Incarnation: 1, State: wire.State_DEAD}}})
	}
	rng := rand.New(rand.NewPCG(9, 9))
	counts := map[string]int{}
	const draws = 30000
	for range draws {
		s := a.Sample(rng, 3)
		if len(s) != 3 || s[0] == s[1] || s[1] == s[2] || s[0] == s[2] {
			t.Fatalf("sample %v", s)
		}
		for _, n := range s {
			counts[n]++
		}
	}
	for _, p := range peers[:10] {
		if counts[p] > 0 {
			t.Fatalf("dead member %s sampled %d times", p, counts[p])
		}
	}
	want := float64(draws*3) / 30
	for _, p := range peers[10:] {
		if c := float64(counts[p]); c < 0.9*want || c > 1.1*want {
			t.Errorf("%s drawn %v times, want about %v", p, c, want)
		}
	}
	if got := a.Sample(rng, 100); len(got) != 30 {
		t.Fatalf("k beyond the live count: %d", len(got))
	}
}

// TestClockOffsetIsTheMajoritysView: with three members and one an hour
// ahead, the two others see no offset and the one ahead sees an hour.
func TestClockOffsetIsTheMajoritysView(t *testing.T) {
	sample := func(m *node, peer string, off time.Duration) {
		p := m.members[peer]
		p.Clock = ClockSample{Offset: off, RTT: time.Millisecond, At: t0}
	}
	a := newNode(t, "a", DefaultConfig(), "b", "c")
	sample(a, "b", 0)
	sample(a, "c", time.Hour)
	if off, n := a.ClockOffset(t0); off != 0 || n != 2 {
		t.Fatalf("a healthy node sees %v over %d peers", off, n)
	}
	c := newNode(t, "c", DefaultConfig(), "a", "b")
	sample(c, "a", -time.Hour)
	sample(c, "b", -time.Hour)
	if off, _ := c.ClockOffset(t0); off != time.Hour {
		t.Fatalf("the node an hour ahead sees %v", off)
	}
	// Two members that disagree: neither can tell which is wrong, so both
	// see the offset (and stop writing: fail safe).
	d := newNode(t, "d", DefaultConfig(), "e")
	sample(d, "e", time.Hour)
	if off, _ := d.ClockOffset(t0); off != -time.Hour {
		t.Fatalf("two members: %v", off)
	}
	// Samples older than the window do not count.
	if _, n := a.ClockOffset(t0.Add(ClockWindow + time.Second)); n != 0 {
		t.Fatalf("%d stale samples counted", n)
	}
}
