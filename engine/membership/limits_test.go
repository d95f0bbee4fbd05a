package membership

import (
	"fmt"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

func fakes(prefix string, n int) []*wire.Member {
	out := make([]*wire.Member, n)
	for i := range out {
		name := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = &wire.Member{Name: name, Address: name, Incarnation: 1, State: wire.State_ALIVE}
	}
	return out
}

func TestNewMembersPerSenderPerSecond(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxNewMembersPerSecond = 10
	n := newNode(t, "a", cfg, "b")
	before := len(n.Members())
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 100)})
	if got := len(n.Members()) - before; got != 10 {
		t.Fatalf("one second from one sender added %d members, want 10", got)
	}
	if s := n.Stats(); s.MembersLimited != 90 {
		t.Fatalf("MembersLimited %d, want 90", s.MembersLimited)
	}
	// Another sender has its own allowance, and counts itself first-hand.
	n.Handle(t0, &wire.Envelope{From: "c", FromAddr: "c", Members: fakes("y", 100)})
	if got := len(n.Members()) - before; got != 10+1+10 {
		t.Fatalf("after a second sender: %d new members, want 21", got)
	}
	// The allowance comes back the next second.
	n.Handle(t0.Add(time.Second), &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 100)})
	if got := len(n.Members()) - before; got != 31 {
		t.Fatalf("a second later: %d new members, want 31", got)
	}
	// News of known members is not limited.
	up := fakes("x", 10)
	for _, u := range up {
		u.Incarnation = 2
		u.State = wire.State_SUSPECT
	}
	n.Handle(t0.Add(time.Second), &wire.Envelope{From: "b", FromAddr: "b", Members: up})
	for _, u := range up {
		if p, ok := n.Get(u.Name); !ok || p.State != wire.State_SUSPECT {
			t.Fatalf("%s: %+v, want suspect", u.Name, p)
		}
	}
}

func TestJoinReplyToOurJoinIsNotLimited(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxNewMembersPerSecond = 10
	n := newNode(t, "a", cfg)
	n.Join(t0, []string{"seed"})
	var sentUs int64
	for _, s := range n.take() {
		if j := s.env.GetJoin(); j != nil {
			sentUs = j.SentUs
		}
	}
	if sentUs == 0 {
		t.Fatal("no join sent")
	}
	reply := func(us int64, members []*wire.Member) *wire.Envelope {
		return &wire.Envelope{From: "seed", FromAddr: "seed", Body: &wire.Envelope_JoinReply{JoinReply: &wire.JoinReply{Members: members, JoinSentUs: us}}}
	}
	// A reply that answers no join of ours is second-hand news like any.
	n.Handle(t0, reply(sentUs+1, fakes("u", 500)))
	if got := len(n.Members()); got != 1+1+10 {
		t.Fatalf("unsolicited reply: view of %d, want self, seed and 10", got)
	}
	n.Handle(t0, reply(sentUs, fakes("s", 500)))
	if got := len(n.Members()); got != 12+500 {
		t.Fatalf("reply to our join: view of %d, want 512", got)
	}
}

func TestMaxMembers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxMembers = 50
	cfg.MaxNewMembersPerSecond = -1
	n := newNode(t, "a", cfg, "b")
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: fakes("x", 1000)})
	if got := len(n.Members()); got != 50 {
		t.Fatalf("view of %d, want the cap 50", got)
	}
	if s := n.Stats(); s.MembersRefused != 1000-48 {
		t.Fatalf("MembersRefused %d, want %d", s.MembersRefused, 1000-48)
	}
	// A stranger writing to a full view is not added either.
	n.Handle(t0, &wire.Envelope{From: "z", FromAddr: "z"})
	if _, ok := n.Get("z"); ok {
		t.Fatal("a full view admitted a new sender")
	}
	// Known members still change state.
	n.Handle(t0, &wire.Envelope{From: "b", FromAddr: "b", Members: []*wire.Member{{Name: "x-0", Address: "x-0", Incarnation: 1, State: wire.State_DEAD}}})
	if p, _ := n.Get("x-0"); p.State != wire.State_DEAD {
		t.Fatalf("x-0 is %v, want dead", p.State)
	}
}

func TestDefaultCapsApply(t *testing.T) {
	n := newNode(t, "a", Config{}, "b")
	for i := range 1000 {
		n.Handle(t0.Add(time.Duration(i)*time.Second), &wire.Envelope{From: "b", FromAddr: "b", Members: fakes(fmt.Sprint("r", i), 20)})
	}
	if got := len(n.Members()); got > DefaultMaxMembers {
		t.Fatalf("view of %d beyond DefaultMaxMembers %d", got, DefaultMaxMembers)
	}
	if got := len(n.Members()); got != min(2+1000*20, DefaultMaxMembers) {
		t.Fatalf("view of %d, want %d", got, DefaultMaxMembers)
	}
}
