package directmail

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

// The ids of one sender's mails are held for AckDelay and acknowledged in
// one message; each sender gets its own, in the order it was first owed.
func TestAcksBatchedPerSender(t *testing.T) {
	b := newBox(t, memstore.New())
	delay := DefaultConfig().AckDelay
	b.m.Acknowledge(t0, "p", "10.0.0.1:7946", 1)
	b.m.Acknowledge(t0.Add(time.Millisecond), "q", "", 7)
	b.m.Acknowledge(t0.Add(2*time.Millisecond), "p", "", 2)
	b.m.Acknowledge(t0.Add(3*time.Millisecond), "p", "", 3)
	if got := b.m.Stats().AcksPending; got != 4 {
		t.Fatalf("%d acks pending, want 4", got)
	}
	if d := b.m.Deadline(); !d.Equal(t0.Add(delay)) {
		t.Fatalf("deadline %v, want %v", d, t0.Add(delay))
	}
	if due := b.m.DueAcks(t0.Add(delay - time.Nanosecond)); len(due) != 0 {
		t.Fatalf("acks due before their delay: %v", due)
	}
	due := b.m.DueAcks(t0.Add(delay))
	if len(due) != 1 || due[0].Peer != "p" || due[0].Addr != "10.0.0.1:7946" || !slices.Equal(due[0].IDs, []uint64{1, 2, 3}) {
		t.Fatalf("due %+v, want p's three ids", due)
	}
	if ids := due[0].Envelope().GetMailAcks().GetIds(); !slices.Equal(ids, []uint64{1, 2, 3}) {
		t.Fatalf("envelope of three ids: %v", due[0].Envelope())
	}
	due = b.m.DueAcks(t0.Add(delay + time.Millisecond))
	if len(due) != 1 || due[0].Peer != "q" {
		t.Fatalf("due %+v, want q's", due)
	}
	// One id travels as a plain MailAck, which every version reads.
	if id := due[0].Envelope().GetMailAck().GetId(); id != 7 {
		t.Fatalf("envelope of one id: %v", due[0].Envelope())
	}
	s := b.m.Stats()
	if s.AcksOwed != 4 || s.AckMessages != 2 || s.AcksPending != 0 || !b.m.Deadline().IsZero() {
		t.Fatalf("stats %+v, deadline %v", s, b.m.Deadline())
	}
}

// The ids owed to one sender are bounded: at MaxAckIDs the acknowledgement
// is due at once; with no delay every mail is acknowledged at once.
func TestAcksBounded(t *testing.T) {
	for _, tc := range []struct {
		delay time.Duration
		max   int
		ids   int
		want  [][]uint64
	}{
		{delay: 50 * time.Millisecond, max: 3, ids: 7, want: [][]uint64{{1, 2, 3}, {4, 5, 6}}},
		{delay: 0, max: 3, ids: 2, want: [][]uint64{{1}, {2}}},
	} {
		cfg := DefaultConfig()
		cfg.AckDelay, cfg.MaxAckIDs = tc.delay, tc.max
		m, err := New(cfg, memstore.New(), rand.New(rand.NewPCG(1, 1)), func(string, *wire.Envelope) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		var got [][]uint64
		for id := range uint64(tc.ids) {
			m.Acknowledge(t0, "p", "", id+1)
			for _, a := range m.DueAcks(t0) {
				got = append(got, a.IDs)
			}
		}
		if !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Fatalf("delay %v, max %d: acks sent %v, want %v", tc.delay, tc.max, got, tc.want)
		}
		if left := m.AcksPending(); left != tc.ids-len(tc.want)*len(tc.want[0]) {
			t.Fatalf("delay %v: %d ids pending", tc.delay, left)
		}
	}
}

// A batched acknowledgement clears every mail it names at the sender, so
// none of them times out into the outbox.
func TestBatchedAckClearsEveryMail(t *testing.T) {
	sender := newBox(t, memstore.New())
	receiver := newBox(t, memstore.New())
	for i := range 5 {
		r := write(t, sender.st, "k"+string(rune('a'+i)), uint64(i+1))
		sender.m.Send(t0, []store.Record{r}, []string{"r"})
	}
	for _, mail := range sender.sent {
		receiver.m.Acknowledge(t0, "s", "", mail.Id)
	}
	due := receiver.m.DueAcks(t0.Add(DefaultConfig().AckDelay))
	if len(due) != 1 || len(due[0].IDs) != 5 {
		t.Fatalf("due %+v, want one acknowledgement of five mails", due)
	}
	for _, id := range due[0].Envelope().GetMailAcks().GetIds() {
		sender.m.Ack(t0, "r", id)
	}
	if err := sender.m.Tick(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if s := sender.m.Stats(); s.Acked != 5 || s.TimedOut != 0 || s.OutboxRecords != 0 {
		t.Fatalf("sender stats %+v", s)
	}
}
