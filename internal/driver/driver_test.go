package driver_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/driver"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// outputs records what a Core releases.
type outputs struct {
	sent    []engine.Message
	durable []store.Record
}

func (o *outputs) Send(msgs []engine.Message)     { o.sent = append(o.sent, msgs...) }
func (o *outputs) Durable(changes []store.Record) { o.durable = append(o.durable, changes...) }

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newCore(t *testing.T) (*driver.Core, *outputs) {
	t.Helper()
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a:1"
	cfg.MaxClockOffset = 0 // alone: nothing to measure the clock against
	e, err := engine.New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 2)), epoch)
	if err != nil {
		t.Fatal(err)
	}
	out := &outputs{}
	return driver.New(e, out), out
}

// TestCommitWaitsForTheSync: a batch's messages that need no sync leave
// at its commit; the messages that acknowledge records, the changes and
// the write acknowledgements only once the sync that covers them is
// released, writes first, and a failed sync releases nothing and fails the
// writes.
func TestCommitWaitsForTheSync(t *testing.T) {
	c, out := newCore(t)
	now := epoch
	c.Engine().Join(now, []string{"seed:1"})
	var acks []error
	ack := func(_ store.Record, err error) { acks = append(acks, err) }
	var made []store.Record
	c.Write(now, engine.WriteOp{Key: []byte("k1"), Value: []byte("v")}, func(r store.Record) { made = append(made, r) }, ack)
	c.Write(now, engine.WriteOp{Key: []byte("k2"), Value: []byte("v")}, nil, ack)
	mail := &wire.Envelope{Cluster: "hearsay", From: "b", FromAddr: "b:1", Body: &wire.Envelope_Mail{Mail: &wire.Mail{Id: 7, Records: []*wire.Record{
		{Key: []byte("r"), Value: []byte("v"), Hlc: uint64(now.UnixMilli()) << 16, Node: 2},
	}}}}
	if err := c.Step(now, mail); err != nil {
		t.Fatal(err)
	}
	if len(made) != 0 || len(acks) != 0 {
		t.Fatal("writes made before the commit")
	}
	if _, err := c.Commit(now); err != nil {
		t.Fatal(err)
	}
	if len(made) != 1 || string(made[0].Key) != "k1" {
		t.Fatalf("made %v after the commit, want k1", made)
	}
	for _, m := range out.sent {
		if m.AfterSync {
			t.Fatalf("%s sent before the sync", m.Env.Kind())
		}
	}
	if !hasKind(out.sent, "join") {
		t.Fatalf("the join did not leave at the commit: %v", kinds(out.sent))
	}
	if len(acks) != 0 || len(out.durable) != 0 {
		t.Fatal("writes acknowledged or changes announced before the sync")
	}
	if !c.Queued() {
		t.Fatal("nothing queued for the sync")
	}
	work := c.TakeSync()
	if c.Queued() || len(c.TakeSync()) != 0 {
		t.Fatal("work taken twice")
	}
	c.Release(work, nil)
	if len(acks) != 2 || acks[0] != nil || acks[1] != nil {
		t.Fatalf("acks after the sync: %v", acks)
	}
	if len(out.durable) != 3 {
		t.Fatalf("%d changes announced, want the 2 writes and the mailed record", len(out.durable))
	}
	// The receiver holds a mail's acknowledgement for up to Mail.AckDelay
	// to batch it with others; when it goes, it goes after a sync too.
	if hasKind(out.sent, "mail_ack") || hasKind(out.sent, "mail_acks") {
		t.Fatalf("the mail ack left before its delay: %v", kinds(out.sent))
	}
	now = now.Add(engine.DefaultConfig().Mail.AckDelay)
	before := len(out.sent)
	if _, err := c.Commit(now); err != nil {
		t.Fatal(err)
	}
	for _, m := range out.sent[before:] {
		if m.AfterSync {
			t.Fatalf("%s sent before the sync", m.Env.Kind())
		}
	}
	c.Release(c.TakeSync(), nil)
	if !hasKind(out.sent, "mail_ack") {
		t.Fatalf("the mail ack did not leave after its delay and the sync: %v", kinds(out.sent))
	}

	// A failed sync: nothing leaves, the write learns why.
	sent := len(out.sent)
	acks = nil
	c.Write(now, engine.WriteOp{Key: []byte("k3"), Value: []byte("v")}, nil, ack)
	if _, err := c.Commit(now.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	c.Release(c.TakeSync(), errors.New("disk on fire"))
	if len(acks) != 1 || !errors.Is(acks[0], driver.ErrNotDurable) {
		t.Fatalf("a write whose sync failed learned %v", acks)
	}
	for _, m := range out.sent[sent:] {
		if m.AfterSync {
			t.Fatalf("%s sent after a failed sync", m.Env.Kind())
		}
	}
}

// TestStopAnswersEveryWrite: a node that stops answers the writes not yet
// made and those waiting for a sync.
func TestStopAnswersEveryWrite(t *testing.T) {
	c, _ := newCore(t)
	stop := errors.New("stopped")
	var got []error
	ack := func(_ store.Record, err error) { got = append(got, err) }
	c.Write(epoch, engine.WriteOp{Key: []byte("a"), Value: []byte("v")}, nil, ack)
	if _, err := c.Commit(epoch); err != nil {
		t.Fatal(err)
	}
	c.Write(epoch, engine.WriteOp{Key: []byte("b"), Value: []byte("v")}, nil, ack)
	c.Stop(stop)
	if len(got) != 2 || !errors.Is(got[0], stop) || !errors.Is(got[1], stop) {
		t.Fatalf("answers %v, want two %v", got, stop)
	}
}

func hasKind(msgs []engine.Message, kind string) bool {
	for _, m := range msgs {
		if m.Env.Kind() == kind {
			return true
		}
	}
	return false
}

func kinds(msgs []engine.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Env.Kind())
	}
	return out
}
