package rumor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type harness struct {
	m    *Monger
	st   store.Store
	sent []sentMsg
	now  time.Time
}

type sentMsg struct {
	to  string
	env *wire.Envelope
}

func newHarness(t *testing.T, rule string, k int, peers ...string) *harness {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Jitter = 0
	cfg.K = k
	cfg.Fanout = 1
	if err := cfg.SetRule(rule); err != nil {
		t.Fatal(err)
	}
	h := &harness{st: memstore.New(), now: t0}
	if len(peers) == 0 {
		peers = []string{"p1", "p2", "p3"}
	}
	// Peers drawn uniformly at random (the engine draws them from the
	// membership view, Membership.Sample).
	sample := func(rng *rand.Rand, k int) []string {
		out := slices.Clone(peers)
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out[:min(k, len(out))]
	}
	h.m = New(cfg, h.st, rand.New(rand.NewPCG(1, 2)), t0, sample,
		func(peer string, env *wire.Envelope) bool {
			h.sent = append(h.sent, sentMsg{peer, env})
			return true
		})
	return h
}

func (h *harness) add(t *testing.T, key string, size int) store.Record {
	t.Helper()
	r := store.Record{Key: []byte(key), Value: make([]byte, size), Version: store.Version{HLC: uint64(len(h.sent) + 1), Node: 1}}
	if _, err := h.st.Apply([]store.Record{r}); err != nil {
		t.Fatal(err)
	}
	h.m.Add(h.now, r)
	return r
}

// round advances to the next round and returns the rumor messages it sent.
func (h *harness) round(t *testing.T) []*wire.Rumor {
	t.Helper()
	h.now = h.m.Deadline()
	h.sent = nil
	if err := h.m.Tick(h.now); err != nil {
		t.Fatal(err)
	}
	var out []*wire.Rumor
	for _, s := range h.sent {
		if r := s.env.GetRumor(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

func TestBlindCounterDiesAfterKSends(t *testing.T) {
	h := newHarness(t, "blind-counter", 3)
	h.add(t, "k", 10)
	for i := range 3 {
		if rs := h.round(t); len(rs) != 1 || len(rs[0].Records) != 1 {
			t.Fatalf("round %d: %d messages", i, len(rs))
		}
		if rs := h.sent[0].env.GetRumor(); rs.Feedback {
			t.Fatal("blind rumor asks for feedback")
		}
	}
	if h.m.Infective() {
		t.Fatal("still infective after k=3 blind sends")
	}
	if rs := h.round(t); len(rs) != 0 {
		t.Fatal("sent after losing interest")
	}
	if s := h.m.Stats(); s.LostInterest != 1 || s.Messages != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFeedbackCounterCountsOnlyUnnecessaryContacts(t *testing.T) {
	h := newHarness(t, "feedback-counter", 2)
	h.add(t, "k", 10)
	// Sends alone never kill a rumor under feedback.
	for range 5 {
		rs := h.round(t)
		if len(rs) != 1 || !rs[0].Feedback {
			t.Fatal("want one feedback rumor per round")
		}
		h.m.Feedback(rs[0].Id, nil) // receiver did not know it: necessary contact
	}
	if !h.m.Infective() {
		t.Fatal("lost interest without unnecessary contacts")
	}
	for i := range 2 {
		rs := h.round(t)
		if len(rs) != 1 {
			t.Fatalf("round %d: no rumor", i)
		}
		h.m.Feedback(rs[0].Id, []uint32{0})
	}
	if h.m.Infective() {
		t.Fatal("still infective after k=2 unnecessary contacts")
	}
	// A late or unknown ack changes nothing.
	h.m.Feedback(999, []uint32{0, 7})
}

// With the coin rule a rumor dies at each counted contact with probability
// 1/k: over many rumors, the fraction dying at the first contact is near 1/k.
func TestCoinRulesLoseInterestWithProbabilityOneOverK(t *testing.T) {
	for _, rule := range []string{"blind-coin", "feedback-coin"} {
		t.Run(rule, func(t *testing.T) {
			const n, k = 4000, 4
			h := newHarness(t, rule, k)
			h.m.cfg.MaxMessageBytes = 1 << 30 // one message for all
			for i := range n {
				h.add(t, fmt.Sprintf("k%05d", i), 1)
			}
			rs := h.round(t)
			if len(rs) != 1 || len(rs[0].Records) != n {
				t.Fatalf("want one message with %d rumors, got %d messages", n, len(rs))
			}
			if rule == "feedback-coin" {
				if h.m.Stats().Hot != n {
					t.Fatal("feedback rule lost interest on a send")
				}
				known := make([]uint32, n)
				for i := range known {
					known[i] = uint32(i)
				}
				h.m.Feedback(rs[0].Id, known)
			}
			died := float64(n-h.m.Stats().Hot) / n
			if died < 0.22 || died > 0.28 {
				t.Fatalf("fraction lost %.3f, want about 1/k = 0.25", died)
			}
		})
	}
}

func TestMaxAgeKillsRumor(t *testing.T) {
	h := newHarness(t, "feedback-counter", 100)
	h.m.cfg.MaxAge = time.Second
	h.add(t, "k", 10)
	for h.now.Sub(t0) < time.Second {
		h.round(t)
	}
	h.round(t)
	if h.m.Infective() || h.m.Stats().DroppedAge != 1 {
		t.Fatalf("rumor survived MaxAge: %+v", h.m.Stats())
	}
}

func TestLargeRumorsAreAnnouncedAndFetched(t *testing.T) {
	h := newHarness(t, "blind-counter", 5)
	small := h.add(t, "small", 10)
	big := h.add(t, "big", 4000)
	rs := h.round(t)
	var recs, anns int
	for _, r := range rs {
		recs += len(r.Records)
		anns += len(r.Announces)
		for _, a := range r.Announces {
			if string(a.Key) != "big" || a.Hlc != big.Version.HLC {
				t.Fatalf("announcement %v", a)
			}
		}
	}
	if recs != 1 || anns != 1 {
		t.Fatalf("records %d announcements %d, want 1 and 1", recs, anns)
	}
	_ = small
	h.sent = nil
	if err := h.m.Fetch(h.now, "p9", [][]byte{[]byte("big"), []byte("absent")}); err != nil {
		t.Fatal(err)
	}
	if len(h.sent) != 1 || h.sent[0].to != "p9" {
		t.Fatalf("fetch answer: %v", h.sent)
	}
	got := h.sent[0].env.GetRumor()
	if !got.Reply || len(got.Records) != 1 || len(got.Records[0].Value) != 4000 {
		t.Fatal("fetch did not return the body")
	}
}

func TestBatchingFitsMessages(t *testing.T) {
	h := newHarness(t, "blind-counter", 5)
	for i := range 50 {
		h.add(t, fmt.Sprintf("key-%02d", i), 100)
	}
	rs := h.round(t)
	total := 0
	for _, r := range rs {
		b := 0
		for _, rec := range r.Records {
			b += len(rec.Key) + len(rec.Value) + 17
		}
		if b > h.m.cfg.MaxMessageBytes {
			t.Fatalf("message carries %d bytes, limit %d", b, h.m.cfg.MaxMessageBytes)
		}
		total += len(r.Records)
	}
	if total != 50 || len(rs) < 5 {
		t.Fatalf("%d rumors in %d messages", total, len(rs))
	}
}

func TestPullAsksAndAnswers(t *testing.T) {
	h := newHarness(t, "blind-counter", 2)
	h.m.cfg.Direction = Pull
	h.m.arm(h.now) // New schedules pull rounds; the direction was set after it
	h.round(t)
	if len(h.sent) != 1 || h.sent[0].env.GetRumorPull() == nil {
		t.Fatalf("pull round sent %v", h.sent)
	}
	h.add(t, "k", 10)
	h.sent = nil
	if rs := h.round(t); len(rs) != 0 {
		t.Fatal("pull-only node pushed")
	}
	h.sent = nil
	if err := h.m.Pulled(h.now, "p2"); err != nil {
		t.Fatal(err)
	}
	if len(h.sent) != 1 || !h.sent[0].env.GetRumor().Reply {
		t.Fatal("pull not answered with a reply")
	}
}

func TestSetRuleRejectsUnknown(t *testing.T) {
	var c Config
	if err := c.SetRule("gossip"); err == nil {
		t.Fatal("unknown rule accepted")
	}
	for _, r := range []string{"feedback-counter", "feedback-coin", "blind-counter", "blind-coin"} {
		if err := c.SetRule(r); err != nil || c.Rule() != r {
			t.Fatalf("%s: %v, got %s", r, err, c.Rule())
		}
	}
	if _, err := ParseDirection("sideways"); err == nil {
		t.Fatal("unknown direction accepted")
	}
}

// A push node with nothing hot and nothing to fetch schedules no round; a
// new rumor schedules one an interval later, not at once (direct mail
// should arrive first, so that feedback finds the update known).
func TestIdleMongerHasNoDeadline(t *testing.T) {
	h := newHarness(t, "feedback-counter", 1)
	if d := h.m.Deadline(); !d.IsZero() {
		t.Fatalf("idle monger wants a round at %v", d)
	}
	h.now = t0.Add(time.Hour)
	h.add(t, "k", 10)
	if d := h.m.Deadline(); d != h.now.Add(h.m.cfg.Interval) {
		t.Fatalf("deadline %v after a new rumor at %v", d, h.now)
	}
	rs := h.round(t)
	if len(rs) != 1 {
		t.Fatalf("%d rumor messages", len(rs))
	}
	h.m.Feedback(rs[0].Id, []uint32{0}) // known: k=1 kills it
	h.round(t)
	if h.m.Infective() || !h.m.Deadline().IsZero() {
		t.Fatalf("after the rumor died: infective %v, deadline %v", h.m.Infective(), h.m.Deadline())
	}
}

// Rumors die of age oldest first, and the order list does not outgrow the
// hot set by more than a constant factor, however rumors die.
func TestExpiryByAgeKeepsOrderBounded(t *testing.T) {
	h := newHarness(t, "feedback-counter", 100, "p1")
	h.m.cfg.MaxAge = time.Second
	for i := range 1000 {
		h.add(t, fmt.Sprintf("k%04d", i), 10)
		if i%2 == 0 {
			h.m.kill(fmt.Sprintf("k%04d", i))
		}
		if i%10 == 0 {
			h.now = h.now.Add(10 * time.Millisecond) // 1,000 rumors over 1 s
		}
	}
	h.m.compact()
	if len(h.m.order) > 2*len(h.m.hot)+64 {
		t.Fatalf("order holds %d slots for %d hot rumors", len(h.m.order), len(h.m.hot))
	}
	h.now = t0.Add(time.Second + 500*time.Millisecond)
	h.m.expire(h.now)
	for k := range h.m.hot {
		if k < "k0500" {
			t.Fatalf("%s outlived MaxAge", k)
		}
	}
	if len(h.m.hot) == 0 || h.m.Stats().DroppedAge == 0 {
		t.Fatalf("hot %d, dropped by age %d", len(h.m.hot), h.m.Stats().DroppedAge)
	}
}

// Announcements are batched by their own size, and feedback indexes the
// records of a message first, then its announcements.
func TestAnnouncementsBatchAndFeedbackIndexes(t *testing.T) {
	h := newHarness(t, "feedback-counter", 1, "p1")
	for i := range 10 {
		h.add(t, fmt.Sprintf("big-%d", i), 100_000)
		h.add(t, fmt.Sprintf("small-%d", i), 10)
	}
	rs := h.round(t)
	if len(rs) != 1 || len(rs[0].Announces) != 10 || len(rs[0].Records) != 10 {
		t.Fatalf("%d messages; want one with 10 records and 10 announcements", len(rs))
	}
	// The receiver knew every small record and no large one.
	known := []uint32{}
	for i := range 10 {
		known = append(known, uint32(i))
	}
	h.m.Feedback(rs[0].Id, known)
	for i := range 10 {
		if h.m.Hot([]byte(fmt.Sprintf("small-%d", i))) || !h.m.Hot([]byte(fmt.Sprintf("big-%d", i))) {
			t.Fatalf("feedback counted against the wrong rumors: small-%d or big-%d", i, i)
		}
	}
}

// A node fetches an announced body from one announcer at a time: further
// announcements of it are not fetched again, and when the body does not
// come in time it is asked of the next announcer.
func TestFetchOneAnnouncerAtATime(t *testing.T) {
	h := newHarness(t, "feedback-counter", 3)
	v := store.Version{HLC: 7, Node: 2}
	want := []Want{{Key: []byte("big"), Version: v}}
	fetches := func() []string {
		var to []string
		for _, s := range h.sent {
			if s.env.GetFetch() != nil {
				to = append(to, s.to)
			}
		}
		h.sent = nil
		return to
	}
	h.m.Announced(h.now, "p1", want)
	h.m.Announced(h.now, "p2", want)
	h.m.Announced(h.now, "p3", want)
	if to := fetches(); !slices.Equal(to, []string{"p1"}) {
		t.Fatalf("fetched from %v, want only p1", to)
	}
	if h.m.Stats().Fetching != 1 {
		t.Fatalf("fetching %d", h.m.Stats().Fetching)
	}
	// p1 does not answer: p2 is asked, then p3, then p1 again.
	for _, next := range []string{"p2", "p3", "p1"} {
		for h.m.Deadline().Before(h.now.Add(time.Hour)) {
			h.round(t)
			if to := fetches(); len(to) > 0 {
				if !slices.Equal(to, []string{next}) {
					t.Fatalf("retried %v, want %s", to, next)
				}
				break
			}
		}
	}
	// The body arrives: the fetch is over, and the monger goes idle.
	h.m.Received([]byte("big"), v)
	h.round(t)
	if s := h.m.Stats(); s.Fetching != 0 || s.FetchRetries != 3 || !h.m.Deadline().IsZero() {
		t.Fatalf("after the body came: %+v, deadline %v", s, h.m.Deadline())
	}
}
