package engine_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
	"github.com/hearsaydb/hearsay/store/memstore"
)

func lone(t *testing.T, configure func(*engine.Config)) *engine.Engine {
	t.Helper()
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a:1"
	cfg.MaxClockOffset = 0 // no peer answers probes here
	if configure != nil {
		configure(&cfg)
	}
	e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 2)), sim.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func member(e *engine.Engine, name string) (quarantined, found bool) {
	for _, m := range e.Members() {
		if m.Name == name {
			return m.Quarantined, true
		}
	}
	return false, false
}

// A peer that keeps sending records that fail validation is quarantined:
// its envelopes are dropped, it is mailed nothing, and it comes back once
// its score has decayed.
func TestInvalidRecordsQuarantineTheSender(t *testing.T) {
	e := lone(t, nil)
	now := sim.Epoch
	hello := func(p string) error {
		return e.Step(now, &wire.Envelope{Cluster: "hearsay", From: p, FromAddr: p + ":1", FromId: 2})
	}
	for _, p := range []string{"b", "mallory"} {
		if err := hello(p); err != nil {
			t.Fatal(err)
		}
	}
	bad := func() error {
		return e.Step(now, &wire.Envelope{Cluster: "hearsay", From: "mallory", FromAddr: "mallory:1", FromId: 9,
			Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{{Key: nil, Value: []byte("x"), Hlc: 1, Node: 9}}}}})
	}
	for i := range 11 { // the penalty decays a little between them
		if err := bad(); !errors.Is(err, engine.ErrBadRecord) {
			t.Fatalf("bad mail %d: %v, want ErrBadRecord", i, err)
		}
		now = now.Add(10 * time.Millisecond)
	}
	if q, ok := member(e, "mallory"); !ok || !q {
		t.Fatalf("mallory quarantined %v (in view %v) after 11 invalid records", q, ok)
	}
	if q, _ := member(e, "b"); q {
		t.Fatal("b quarantined")
	}
	if err := bad(); !errors.Is(err, engine.ErrQuarantined) {
		t.Fatalf("envelope from a quarantined peer: %v, want ErrQuarantined", err)
	}
	st := e.Stats().Trust
	if st.Quarantined != 1 || st.Dropped != 1 || st.Offences[trust.InvalidRecord] != 11 {
		t.Fatalf("stats %+v", st)
	}
	rd := e.Ready()
	if len(rd.Quarantine) != 1 || rd.Quarantine[0].Peer != "mallory" {
		t.Fatalf("Ready.Quarantine %+v", rd.Quarantine)
	}
	if mailed := writeAndMail(t, e, now); !slices.Equal(mailed, []string{"b:1"}) {
		t.Fatalf("mailed to %v, want b only", mailed)
	}
	// Repaired, it comes back: its penalty halves every minute.
	for range 3 * 60 {
		now = now.Add(time.Second)
		if err := e.Tick(now); err != nil {
			t.Fatal(err)
		}
		_ = hello("b")
	}
	if q, _ := member(e, "mallory"); q {
		t.Fatal("still quarantined three half-lives later")
	}
	if err := hello("mallory"); err != nil {
		t.Fatalf("released peer: %v", err)
	}
}

// With the defences off, offences are counted and nobody is quarantined.
func TestQuarantineOff(t *testing.T) {
	e := lone(t, func(c *engine.Config) { c.Trust.Disabled = true })
	for i := range 50 {
		err := e.Step(sim.Epoch, &wire.Envelope{Cluster: "hearsay", From: "mallory", FromAddr: "mallory:1", FromId: 9,
			Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: uint64(i), Records: []*wire.Record{{Key: []byte("k"), Value: []byte("x"), Hlc: 1 << 62, Node: 9}}}}})
		if !errors.Is(err, engine.ErrBadRecord) {
			t.Fatalf("future record: %v", err)
		}
	}
	st := e.Stats().Trust
	if st.Quarantined != 0 || st.Offences[trust.FutureVersion] != 50 {
		t.Fatalf("stats %+v", st)
	}
}

// The driver reports offences by member name or gossip address; unknown
// kinds are refused.
func TestOffenceFromDriver(t *testing.T) {
	e := lone(t, nil)
	if err := e.Step(sim.Epoch, &wire.Envelope{Cluster: "hearsay", From: "m", FromAddr: "m:1", FromId: 2}); err != nil {
		t.Fatal(err)
	}
	if err := e.Offence(sim.Epoch, "m:1", "gremlins"); err == nil {
		t.Fatal("unknown kind accepted")
	}
	for range 10 {
		if err := e.Offence(sim.Epoch, "m:1", trust.Undecodable); err != nil {
			t.Fatal(err)
		}
	}
	if !e.Quarantined(sim.Epoch, "m") {
		t.Fatal("ten undecodable frames from m's address did not quarantine m")
	}
}

// A death claim from another node is a suspicion: the accused has the
// suspicion timeout to refute, and no node declares it dead meanwhile.
func TestDeathClaimIsDoubted(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 3, Latency: time.Millisecond}, 4, nil)
	nodes := c.Nodes()
	target := nodes[3]
	env := &wire.Envelope{Cluster: "hearsay", From: "n2", FromAddr: "n2", FromId: 2,
		Members: []*wire.Member{{Name: target.Name, Address: target.Addr, NodeId: 4, Incarnation: target.Engine.Self().Incarnation, State: wire.State_DEAD}}}
	if err := nodes[0].Engine.Step(c.Now(), env); err != nil {
		t.Fatal(err)
	}
	if s := state(nodes[0], target.Name); s != wire.State_SUSPECT {
		t.Fatalf("after a death claim: %v, want SUSPECT", s)
	}
	if err := c.RunFor(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if nd != target && state(nd, target.Name) != wire.State_ALIVE {
			t.Fatalf("%s sees %s %v after the refutation", nd.Name, target.Name, state(nd, target.Name))
		}
	}
}
