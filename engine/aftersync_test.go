package engine_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// TestAfterSync checks which messages wait for the store's sync: those that
// carry or acknowledge records do, membership does not (a slow disk must
// not delay failure detection).
func TestAfterSync(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mk := func(name string, id uint64) *engine.Engine {
		cfg := engine.DefaultConfig()
		cfg.Name, cfg.NodeID, cfg.Addr = name, id, name
		e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(id, id)), now)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := mk("a", 1), mk("b", 2)
	engines := map[string]*engine.Engine{"a": a, "b": b}
	seen := map[string]bool{} // kind -> AfterSync
	// deliver runs both engines until nothing is left to send.
	deliver := func() {
		for range 20 {
			moved := false
			for _, e := range []*engine.Engine{a, b} {
				if err := e.Tick(now); err != nil {
					t.Fatal(err)
				}
				for _, m := range e.Ready().Messages {
					seen[m.Env.Kind()] = m.AfterSync
					moved = true
					if err := engines[m.To].Step(now, m.Env); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !moved {
				return
			}
			now = now.Add(10 * time.Millisecond)
		}
	}
	a.Join(now, []string{"b"})
	deliver()
	if _, err := a.Write(now, []byte("k"), []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	deliver()
	now = now.Add(2 * time.Second) // a probe period: pings and acks
	deliver()
	for kind, want := range map[string]bool{"mail": true, "mail_ack": true, "rumor": true, "rumor_ack": true, "join": false, "join_reply": false, "ping": false, "ack": false} {
		got, ok := seen[kind]
		if !ok {
			t.Logf("no %s message in this exchange (seen: %v)", kind, seen)
			continue
		}
		if got != want {
			t.Errorf("%s: AfterSync %v, want %v", kind, got, want)
		}
	}
}
