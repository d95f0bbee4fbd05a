package engine_test

import (
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/sim"
)

// TestSpreadQueryReportsHoldersAndMechanism writes on one node and asks from
// another which members hold the update and how it reached them: with
// direct mail on, every peer has it by mail and the writer by its client;
// a node that was down while it was written gets it by anti-entropy.
func TestSpreadQueryReportsHoldersAndMechanism(t *testing.T) {
	slow := func(cfg *engine.Config) {
		cfg.Membership.SuspicionTimeout = time.Hour // n4 stays a member while down
		cfg.RumorMongering = false
		cfg.AE.Interval = time.Second
	}
	c := cluster(t, sim.Options{Seed: 7, Latency: time.Millisecond}, 4, slow)
	n1, n2, n4 := c.Nodes()[0], c.Nodes()[1], c.Nodes()[3]
	n4.Crash()
	rec, err := n1.Put("k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n4.Restart(); err != nil {
		t.Fatal(err)
	}
	// n1 retries its mail to n4 and anti-entropy runs every second:
	// whichever comes first, the answer must name it.
	ok, err := c.RunUntil(time.Minute, func() bool { return holds(n4, "k", rec.Version) })
	if err != nil || !ok {
		t.Fatalf("n4 never got the write: %v", err)
	}

	answers := map[string]engine.SpreadEntry{}
	c.OnSpread = func(nd *sim.Node, r engine.SpreadReply) {
		if nd == n2 && len(r.Entries) == 1 {
			answers[r.From] = r.Entries[0]
		}
	}
	_, asked, err := n2.QuerySpread("k")
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 3 {
		t.Fatalf("asked %v, want the 3 other members", asked)
	}
	ok, err = c.RunUntil(time.Second, func() bool { return len(answers) == 3 })
	if err != nil || !ok {
		t.Fatalf("answers %v: %v", answers, err)
	}
	own, err := n2.Engine.LocalSpread([][]byte{[]byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	answers["n2"] = own[0]
	for name, want := range map[string]string{"n1": engine.ViaLocal, "n2": engine.ViaDirectMail, "n3": engine.ViaDirectMail} {
		a := answers[name]
		if !a.Present || a.Version != rec.Version || a.Via != want {
			t.Errorf("%s answered %+v, want version %v via %s", name, a, rec.Version, want)
		}
	}
	if a := answers["n4"]; !a.Present || a.Version != rec.Version || (a.Via != engine.ViaDirectMail && a.Via != engine.ViaAntiEntropy) {
		t.Errorf("n4 answered %+v, want version %v by mail retry or anti-entropy", a, rec.Version)
	}

	// An absent key is reported absent, not invented.
	clear(answers)
	if _, _, err := n2.QuerySpread("nope"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.RunUntil(time.Second, func() bool { return len(answers) == 3 }); err != nil || !ok {
		t.Fatalf("answers %v: %v", answers, err)
	}
	for name, a := range answers {
		if a.Present {
			t.Errorf("%s claims to hold an absent key: %+v", name, a)
		}
	}
	if _, _, err := n2.QuerySpread(); err == nil {
		t.Error("a query of no keys was accepted")
	}
}
