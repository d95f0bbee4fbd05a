package engine_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/membership"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// A flood of 20,000 invented alive members from one sender, in 1,000
// envelopes of 20 (what an attacker sent in issue 11), leaves the view
// bounded and direct mail on: the next write is mailed at once to the two
// real peers.
func TestFakeMemberFloodLeavesDirectMailOn(t *testing.T) {
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a:1"
	cfg.MaxClockOffset = 0 // no peer answers probes here
	now := sim.Epoch
	e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 2)), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"b", "c"} {
		if err := e.Step(now, &wire.Envelope{Cluster: cfg.Cluster, From: p, FromAddr: p + ":1", FromId: 2}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		env := &wire.Envelope{Cluster: cfg.Cluster, From: "mallory", FromAddr: "mallory:1", FromId: 9}
		for j := range 20 {
			name := fmt.Sprintf("fake-%d-%d", i, j)
			env.Members = append(env.Members, &wire.Member{Name: name, Address: name + ":1", Incarnation: 1, State: wire.State_ALIVE, NodeId: uint64(100 + i*20 + j)})
		}
		if err := e.Step(now, env); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Tick(now); err != nil {
		t.Fatal(err)
	}
	e.Ready()
	// Self, b, c, mallory and mallory's allowance for one second.
	want := 4 + membership.DefaultMaxNewMembersPerSecond
	if got := len(e.Members()); got != want {
		t.Fatalf("view of %d members after the flood, want %d", got, want)
	}
	s := e.Stats().Members
	if s.MembersLimited != 20000-membership.DefaultMaxNewMembersPerSecond {
		t.Fatalf("MembersLimited %d", s.MembersLimited)
	}
	mailed := writeAndMail(t, e, now)
	for _, p := range []string{"b:1", "c:1"} {
		if !slices.Contains(mailed, p) {
			t.Fatalf("write not mailed to %s (mailed to %d peers): direct mail is off", p, len(mailed))
		}
	}
}

// A flood that goes on: 64 fake members a second (two senders at their
// allowance) for a minute, far more than the direct-mail limit alive at
// once. Fakes never answer, so this node never hears from them: they get
// no direct mail and do not count towards its limit, and writes are
// still mailed to the real peers and to nobody else.
func TestSustainedFakeMemberFloodLeavesDirectMailOn(t *testing.T) {
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a:1"
	cfg.MaxClockOffset = 0 // no peer answers probes here
	now := sim.Epoch
	e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 2)), now)
	if err != nil {
		t.Fatal(err)
	}
	real := func() {
		for _, p := range []string{"b", "c"} {
			if err := e.Step(now, &wire.Envelope{Cluster: cfg.Cluster, From: p, FromAddr: p + ":1", FromId: 2}); err != nil {
				t.Fatal(err)
			}
		}
	}
	real()
	fake := 0
	for sec := range 60 {
		for _, sender := range []string{"mallory", "trudy"} {
			env := &wire.Envelope{Cluster: cfg.Cluster, From: sender, FromAddr: sender + ":1", FromId: 9}
			for range membership.DefaultMaxNewMembersPerSecond {
				name := fmt.Sprintf("fake-%d", fake)
				fake++
				env.Members = append(env.Members, &wire.Member{Name: name, Address: name + ":1", Incarnation: 1, State: wire.State_ALIVE, NodeId: uint64(100 + fake)})
			}
			if err := e.Step(now, env); err != nil {
				t.Fatal(err)
			}
		}
		real() // the real peers talk to us all along
		now = sim.Epoch.Add(time.Duration(sec+1) * time.Second)
		if err := e.Tick(now); err != nil {
			t.Fatal(err)
		}
		e.Ready()
	}
	if live := e.NumLive() - 1; live <= cfg.DirectMailMaxPeers {
		t.Fatalf("only %d live peers: the flood did not exceed the direct-mail limit, the test proves nothing", live)
	}
	mailed := writeAndMail(t, e, now)
	slices.Sort(mailed)
	if !slices.Equal(mailed, []string{"b:1", "c:1", "mallory:1", "trudy:1"}) {
		t.Fatalf("with %d live peers, the write was mailed to %d: %v", e.NumLive()-1, len(mailed), mailed[:min(len(mailed), 8)])
	}
}

// writeAndMail makes a local write on e and returns the addresses it was
// direct-mailed to.
func writeAndMail(t *testing.T, e *engine.Engine, now time.Time) []string {
	t.Helper()
	if _, err := e.Write(now, []byte("k"), []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	if err := e.Tick(now); err != nil {
		t.Fatal(err)
	}
	var mailed []string
	for _, m := range e.Ready().Messages {
		if m.Env.GetMail() != nil {
			mailed = append(mailed, m.To)
		}
	}
	return mailed
}
