package engine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
)

// checkRevocation stands for a CA signature check: a revocation of NAME is
// valid when its value is "revoke NAME".
func checkRevocation(key, value []byte, tombstone bool) error {
	name, ok := strings.CutPrefix(string(key), string(engine.RevokedPrefix))
	switch {
	case !ok:
		return errors.New("unknown reserved key")
	case tombstone:
		return errors.New("a revocation cannot be deleted")
	case string(value) != "revoke "+name:
		return errors.New("bad signature")
	}
	return nil
}

// TestRevocationExpelsMember: a revocation record that the hook accepts
// spreads to every member, which marks the member revoked and dead, and
// refuses its envelopes; a record the hook refuses is refused at the write
// and never spreads; a revoked member is never reaped.
func TestRevocationExpelsMember(t *testing.T) {
	c := cluster(t, sim.Options{Seed: 3, Latency: time.Millisecond}, 4, func(cfg *engine.Config) {
		cfg.CheckReserved = checkRevocation
	})
	nodes := c.Nodes()
	n1, n2, n4 := nodes[0], nodes[1], nodes[3]
	key := string(engine.RevokedKey("n4"))
	if _, err := n2.Put(key, "forged"); !errors.Is(err, engine.ErrReserved) {
		t.Fatalf("forged revocation written: %v", err)
	}
	if _, err := n2.Delete(key); !errors.Is(err, engine.ErrReserved) {
		t.Fatalf("revocation deleted: %v", err)
	}
	// A node's loop ticks as soon as it starts, as the runtime's does, so
	// the seed's first probe round, and with it the measure of its clock
	// that writes wait for, comes a probe interval after the others join:
	// the write is retried until the clock is measured.
	var werr error
	written := func() bool {
		_, werr = n1.Put(key, "revoke n4")
		return !errors.Is(werr, engine.ErrClockOffset)
	}
	if ok, err := c.RunUntil(10*time.Second, written); err != nil || !ok || werr != nil {
		t.Fatalf("revocation not written: %v, %v", werr, err)
	}
	revoked := func() bool {
		for _, nd := range nodes[:3] {
			if !nd.Engine.Revoked("n4") || state(nd, "n4") != wire.State_DEAD {
				return false
			}
		}
		return true
	}
	if ok, err := c.RunUntil(10*time.Second, revoked); err != nil || !ok {
		t.Fatalf("n4 not revoked everywhere within 10 s: %v", err)
	}
	for _, nd := range nodes[:3] {
		for _, m := range nd.Engine.Members() {
			if m.Name == "n4" && !m.Revoked {
				t.Fatalf("%s: n4 not marked revoked", nd.Name)
			}
		}
	}
	// n4's writes are refused; it never comes back, not even after the
	// reap timeout.
	late, err := n4.Put("late", "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(2 * time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[:3] {
		if holds(nd, "late", late.Version) {
			t.Fatalf("%s took the revoked member's write", nd.Name)
		}
		if !nd.Engine.Revoked("n4") || state(nd, "n4") != wire.State_DEAD {
			t.Fatalf("%s: n4 is %v after 2 h", nd.Name, state(nd, "n4"))
		}
		if got := len(live(nd)); got != 3 {
			t.Fatalf("%s: %d live members, want 3", nd.Name, got)
		}
	}
	refused := nodes[0].Engine.Stats().Refused
	if refused == 0 {
		t.Errorf("n1 refused no envelope of n4")
	}
	// A direct envelope from n4 is refused by name.
	if err := n1.Engine.Step(c.Now(), &wire.Envelope{Cluster: "hearsay", From: "n4", FromAddr: "n4"}); !errors.Is(err, engine.ErrRevoked) {
		t.Fatalf("envelope from n4: %v", err)
	}
}
