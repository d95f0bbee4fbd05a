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

// TestMailAcksBatched checks that a receiver acknowledges a sender's mails
// of one AckDelay in one MailAcks message, which waits for the sync like
// every acknowledgement, and that the sender takes it for all of them.
func TestMailAcksBatched(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mk := func(name string, id uint64) *engine.Engine {
		cfg := engine.DefaultConfig()
		cfg.Name, cfg.NodeID, cfg.Addr = name, id, name
		cfg.RumorMongering, cfg.AntiEntropy = false, false
		e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(id, id)), now)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := mk("a", 1), mk("b", 2)
	engines := map[string]*engine.Engine{"a": a, "b": b}
	var acks []engine.Message
	// step ticks both engines at now and delivers what they send, keeping
	// b's acknowledgements of mail aside.
	step := func() {
		for range 10 {
			moved := false
			for _, e := range []*engine.Engine{a, b} {
				if err := e.Tick(now); err != nil {
					t.Fatal(err)
				}
				for _, m := range e.Ready().Messages {
					moved = true
					if k := m.Env.Kind(); k == "mail_ack" || k == "mail_acks" {
						acks = append(acks, m)
					}
					if err := engines[m.To].Step(now, m.Env); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !moved {
				return
			}
		}
	}
	a.Join(now, []string{"b"})
	step()
	first := now
	for i := range 3 {
		if _, err := a.Write(now, []byte{'k', byte('0' + i)}, []byte("v"), false); err != nil {
			t.Fatal(err)
		}
		step()
		now = now.Add(10 * time.Millisecond)
	}
	if len(acks) != 0 {
		t.Fatalf("mail acknowledged before the ack delay: %v", acks)
	}
	if got := b.Stats().Mail.AcksPending; got != 3 {
		t.Fatalf("%d acks pending at b, want 3", got)
	}
	now = first.Add(engine.DefaultConfig().Mail.AckDelay)
	step()
	if len(acks) != 1 || len(acks[0].Env.GetMailAcks().GetIds()) != 3 || !acks[0].AfterSync {
		t.Fatalf("want one MailAcks of three mails, after the sync: %v", acks)
	}
	now = now.Add(5 * time.Second)
	step()
	if s := a.Stats().Mail; s.Acked != 3 || s.TimedOut != 0 || s.OutboxRecords != 0 {
		t.Fatalf("a's mail stats %+v", s)
	}
}

// TestReplicationLeavesSenderAddressOut checks that, in an unsigned
// cluster, mail and its acknowledgement name their sender without its
// address and node id (the receiver knows both from membership), while
// membership messages keep them (a receiver learns new members from them).
func TestReplicationLeavesSenderAddressOut(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mk := func(name string, id uint64) *engine.Engine {
		cfg := engine.DefaultConfig()
		cfg.Name, cfg.NodeID, cfg.Addr = name, id, name+":7946"
		cfg.RumorMongering, cfg.AntiEntropy = false, false
		cfg.Mail.AckDelay = 0
		e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(id, id)), now)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := mk("a", 1), mk("b", 2)
	engines := map[string]*engine.Engine{"a:7946": a, "b:7946": b}
	kinds := map[string]bool{}
	run := func() {
		for range 10 {
			moved := false
			for _, e := range []*engine.Engine{a, b} {
				if err := e.Tick(now); err != nil {
					t.Fatal(err)
				}
				for _, m := range e.Ready().Messages {
					moved = true
					kind := m.Env.Kind()
					kinds[kind] = true
					withSender := m.Env.FromAddr != "" && m.Env.FromId != 0
					switch kind {
					case "mail", "mail_ack":
						if m.Env.FromAddr != "" || m.Env.FromId != 0 {
							t.Errorf("%s carries the sender's address %q and id %d", kind, m.Env.FromAddr, m.Env.FromId)
						}
					case "join", "join_reply", "ping", "ack":
						if !withSender {
							t.Errorf("%s without the sender's address and id", kind)
						}
					}
					if err := engines[m.To].Step(now, m.Env); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !moved {
				return
			}
		}
	}
	a.Join(now, []string{"b:7946"})
	run()
	if _, err := a.Write(now, []byte("k"), []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	run()
	if !kinds["mail"] || !kinds["mail_ack"] || !kinds["join"] {
		t.Fatalf("messages seen: %v", kinds)
	}
	if s := a.Stats().Mail; s.Acked != 1 {
		t.Fatalf("mail not acknowledged without the sender's address: %+v", s)
	}
}
