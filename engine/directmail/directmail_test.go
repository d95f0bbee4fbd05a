package directmail

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type box struct {
	m    *Mailer
	st   store.Store
	sent []*wire.Mail
}

func newBox(t *testing.T, st store.Store) *box {
	t.Helper()
	b := &box{st: st}
	cfg := DefaultConfig()
	m, err := New(cfg, st, rand.New(rand.NewPCG(1, 1)), func(peer string, env *wire.Envelope) bool {
		b.sent = append(b.sent, env.GetMail())
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	b.m = m
	return b
}

func write(t *testing.T, st store.Store, key string, hlc uint64) store.Record {
	t.Helper()
	r := store.Record{Key: []byte(key), Value: []byte("v"), Version: store.Version{HLC: hlc, Node: 1}}
	if _, err := st.Apply([]store.Record{r}); err != nil {
		t.Fatal(err)
	}
	return r
}

// An ack for an older version must not clear a newer one queued meanwhile.
func TestAckKeepsNewerQueuedVersion(t *testing.T) {
	b := newBox(t, memstore.New())
	r1 := write(t, b.st, "k", 1)
	b.m.Send(t0, []store.Record{r1}, []string{"p"})
	now := t0.Add(2 * time.Second)
	if err := b.m.Tick(now); err != nil { // the mail times out: k@1 is owed
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	b.sent = nil
	if err := b.m.Tick(now); err != nil { // the retry carries k@1
		t.Fatal(err)
	}
	if len(b.sent) != 1 || b.sent[0].Records[0].Hlc != 1 {
		t.Fatalf("want one retry of k@1, got %v", b.sent)
	}
	retry := b.sent[0].Id
	// While the retry is in flight, another mail carrying k@2 fails and
	// queues the newer version.
	write(t, b.st, "k", 2)
	if err := b.m.queue(b.m.peers["p"], "k", store.Version{HLC: 2, Node: 1}); err != nil {
		t.Fatal(err)
	}
	b.m.Ack(now, "p", retry)
	if b.m.Outbox("p") != 1 {
		t.Fatal("the ack of k@1 cleared the entry owed at k@2")
	}
	// The next retry sends k@2, and its ack clears the entry.
	b.sent = nil
	if err := b.m.Tick(now); err != nil {
		t.Fatal(err)
	}
	if len(b.sent) != 1 || b.sent[0].Records[0].Hlc != 2 {
		t.Fatalf("want a retry of k@2, got %v", b.sent)
	}
	b.m.Ack(now, "p", b.sent[0].Id)
	if b.m.Outbox("p") != 0 {
		t.Fatal("ack of k@2 did not clear the outbox")
	}
}

// Backoff doubles from RetryMin up to RetryMax, with jitter within [d/2, d).
func TestBackoffGrowsAndIsCapped(t *testing.T) {
	b := newBox(t, memstore.New())
	cfg := b.m.cfg
	for attempt, want := range []time.Duration{cfg.RetryMin, 2 * cfg.RetryMin, 4 * cfg.RetryMin} {
		for range 50 {
			d := b.m.backoff(attempt)
			if d < want/2 || d >= want {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v)", attempt, d, want/2, want)
			}
		}
	}
	for range 50 {
		if d := b.m.backoff(40); d >= cfg.RetryMax || d < cfg.RetryMax/2 {
			t.Fatalf("capped backoff %v outside [%v, %v)", d, cfg.RetryMax/2, cfg.RetryMax)
		}
	}
}

// Outboxes are persisted in the store and reloaded by a new mailer; an
// ack removes the persisted entry too.
func TestOutboxPersistsAndAckClears(t *testing.T) {
	st := memstore.New()
	b := newBox(t, st)
	r := write(t, st, "k", 5)
	b.m.Send(t0, []store.Record{r}, []string{"peer-a"})
	if err := b.m.Tick(t0.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	reloaded := newBox(t, st)
	if reloaded.m.Outbox("peer-a") != 1 || reloaded.m.Stats().OutboxRecords != 1 {
		t.Fatalf("reloaded outbox: %d", reloaded.m.Outbox("peer-a"))
	}
	// The reloaded outbox is retried after a backoff.
	now := t0.Add(time.Minute)
	for _, at := range []time.Time{now, now.Add(reloaded.m.cfg.RetryMax)} {
		if err := reloaded.m.Tick(at); err != nil {
			t.Fatal(err)
		}
	}
	if len(reloaded.sent) != 1 || len(reloaded.sent[0].Records) != 1 {
		t.Fatalf("reloaded mailer did not retry: %v", reloaded.sent)
	}
	reloaded.m.Ack(now, "peer-a", reloaded.sent[0].Id)
	if reloaded.m.Outbox("peer-a") != 0 {
		t.Fatal("ack did not clear the outbox")
	}
	if again := newBox(t, st); again.m.Outbox("peer-a") != 0 {
		t.Fatal("ack did not clear the persisted entry")
	}
}

func TestCorruptOutboxEntryIsAnError(t *testing.T) {
	st := memstore.New()
	if err := st.SetMeta([]byte("ob/peer\x00key"), []byte("short")); err != nil {
		t.Fatal(err)
	}
	_, err := New(DefaultConfig(), st, rand.New(rand.NewPCG(1, 1)), func(string, *wire.Envelope) bool { return true })
	if err == nil {
		t.Fatal("corrupt outbox entry accepted")
	}
}
