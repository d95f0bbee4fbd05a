package engine_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/engine/trust"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/sim"
)

// served counts the messages of Ready addressed to peer (at its address,
// peer+":1") that satisfy is.
func served(e *engine.Engine, peer string, is func(*wire.Envelope) bool) int {
	n := 0
	for _, m := range e.Ready().Messages {
		if m.To == peer+":1" && is(m.Env) {
			n++
		}
	}
	return n
}

func isRumorReply(env *wire.Envelope) bool { return env.GetRumor() != nil && env.GetRumor().Reply }

// A peer that asks for rumor bodies far faster than any honest peer does
// is served its burst and then the refill rate only; the excess is
// scored once a second, and a flood kept up for seconds quarantines it.
// An honest peer fetching at the same time is served throughout.
func TestFetchFloodRefusedScoredAndQuarantined(t *testing.T) {
	e := lone(t, nil)
	now := sim.Epoch
	if _, err := e.Write(now, []byte("big"), []byte("body"), false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"b", "mallory"} {
		if err := e.Step(now, &wire.Envelope{Cluster: "hearsay", From: p, FromAddr: p + ":1", FromId: 2}); err != nil {
			t.Fatal(err)
		}
	}
	e.Ready()
	fetch := func(from string) error {
		return e.Step(now, &wire.Envelope{Cluster: "hearsay", From: from, FromAddr: from + ":1",
			Body: &wire.Envelope_Fetch{Fetch: &wire.Fetch{Keys: [][]byte{[]byte("big")}}}})
	}
	def := engine.DefaultFetchRate
	// Mallory sends 1,000 fetches a second, in steps of 10 ms; b sends 10
	// a second.
	var ok, limited, honestRefused, bServed int
	quarantinedAt := time.Duration(-1)
	for step := range 2000 {
		for range 10 {
			err := fetch("mallory")
			switch {
			case err == nil:
				ok++
			case errors.Is(err, engine.ErrRateLimited):
				limited++
			case errors.Is(err, engine.ErrQuarantined):
				if quarantinedAt < 0 {
					quarantinedAt = now.Sub(sim.Epoch)
				}
			default:
				t.Fatalf("fetch: %v", err)
			}
		}
		if step%10 == 0 {
			if err := fetch("b"); err != nil {
				honestRefused++
			}
		}
		bServed += served(e, "b", isRumorReply)
		now = now.Add(10 * time.Millisecond)
		if err := e.Tick(now); err != nil {
			t.Fatal(err)
		}
	}
	if honestRefused != 0 || bServed != 200 {
		t.Fatalf("b, fetching 10 a second: %d refused, %d of 200 served", honestRefused, bServed)
	}
	if quarantinedAt < 0 {
		t.Fatalf("mallory not quarantined after 20 s of flood (%d served, %d refused)", ok, limited)
	}
	// Until quarantined, mallory got its burst and the refill rate.
	secs := quarantinedAt.Seconds()
	if want := float64(def.Burst) + def.PerSecond*secs; float64(ok) > want+1 || float64(ok) < want-def.PerSecond*0.02-1 {
		t.Fatalf("mallory served %d fetches in %.2f s, want about %.0f (burst %d + %v/s)", ok, secs, want, def.Burst, def.PerSecond)
	}
	// Scored once a second: weight 10 against a threshold of 100, decaying
	// with a half-life of a minute, takes 11 offences.
	st := e.Stats().Trust
	if secs < 9 || secs > 12 {
		t.Fatalf("mallory quarantined after %.2f s of flood, want 10 to 11", secs)
	}
	if got := st.Offences[trust.RateLimit]; got < 10 || got > 12 {
		t.Fatalf("%d rate_limit offences, want one a second until quarantine (%.1f s)", got, secs)
	}
	if st.RateLimited[engine.LimitFetch] != uint64(limited) || limited == 0 {
		t.Fatalf("RateLimited %v, want %d fetches", st.RateLimited, limited)
	}
	if q, _ := member(e, "mallory"); !q {
		t.Fatal("mallory not shown quarantined")
	}
	if q, _ := member(e, "b"); q {
		t.Fatal("b quarantined")
	}
}

// An exchange started over and over (a full exchange, which streams the
// whole replica) is refused past the burst with no answer at all, and a
// peer that keeps starting them is quarantined.
func TestAEStartFloodRefusedAndQuarantined(t *testing.T) {
	e := lone(t, nil)
	now := sim.Epoch
	if _, err := e.Write(now, []byte("k"), []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	if err := e.Step(now, &wire.Envelope{Cluster: "hearsay", From: "mallory", FromAddr: "mallory:1", FromId: 2}); err != nil {
		t.Fatal(err)
	}
	e.Ready()
	isAE := func(env *wire.Envelope) bool {
		switch env.Body.(type) {
		case *wire.Envelope_AeRecords, *wire.Envelope_AeDiff, *wire.Envelope_AeError, *wire.Envelope_AeCells, *wire.Envelope_AeMore:
			return true
		}
		return false
	}
	var session uint64
	start := func() error {
		session++
		return e.Step(now, &wire.Envelope{Cluster: "hearsay", From: "mallory", FromAddr: "mallory:1",
			Body: &wire.Envelope_AeStart{AeStart: &wire.AEStart{Session: session, Mode: wire.AEMode(0), Full: true}}})
	}
	burst := engine.DefaultAEStartRate.Burst
	for i := range burst {
		if err := start(); err != nil {
			t.Fatalf("start %d within the burst: %v", i, err)
		}
	}
	if n := served(e, "mallory", isAE); n == 0 {
		t.Fatal("exchanges within the burst not answered")
	}
	if err := start(); !errors.Is(err, engine.ErrRateLimited) {
		t.Fatalf("start beyond the burst: %v, want ErrRateLimited", err)
	}
	if n := served(e, "mallory", isAE); n != 0 {
		t.Fatalf("a refused start was answered with %d messages", n)
	}
	if got := e.Stats().Trust.Offences[trust.RateLimit]; got != 1 {
		t.Fatalf("%d rate_limit offences after the first excess, want 1", got)
	}
	// 100 starts a second from then on.
	var q bool
	for range 3000 {
		now = now.Add(10 * time.Millisecond)
		if err := start(); errors.Is(err, engine.ErrQuarantined) {
			q = true
			break
		}
	}
	if !q {
		t.Fatalf("mallory not quarantined after 30 s of 100 exchanges a second: %+v", e.Stats().Trust)
	}
}

// An honest peer at the fastest rates the default timers allow, for ten
// minutes, is never refused nor scored: an exchange every 5 s (the
// shortest jittered anti-entropy interval) plus one at its join, a rumor
// pull every 160 ms (the shortest jittered round), and fetches: one after
// each of this node's pushes, one after each of its pulls, one retry
// batch each round, all three at once in each round.
func TestHonestPeerAtItsFastestNeverLimited(t *testing.T) {
	e := lone(t, nil)
	now := sim.Epoch
	step := func(body *wire.Envelope) {
		t.Helper()
		body.Cluster, body.From, body.FromAddr = "hearsay", "b", "b:1"
		if err := e.Step(now, body); err != nil {
			t.Fatalf("at %v: %v", now.Sub(sim.Epoch), err)
		}
	}
	var session uint64
	aeStart := func() {
		session++
		step(&wire.Envelope{Body: &wire.Envelope_AeStart{AeStart: &wire.AEStart{Session: session, Full: true}}})
	}
	aeStart() // at its join
	nextAE := now
	for now.Before(sim.Epoch.Add(10 * time.Minute)) {
		if !now.Before(nextAE) {
			aeStart()
			nextAE = now.Add(5 * time.Second)
		}
		step(&wire.Envelope{Body: &wire.Envelope_RumorPull{RumorPull: &wire.RumorPull{}}})
		for range 3 {
			step(&wire.Envelope{Body: &wire.Envelope_Fetch{Fetch: &wire.Fetch{Keys: [][]byte{[]byte("k")}}}})
		}
		e.Ready()
		now = now.Add(160 * time.Millisecond)
		if err := e.Tick(now); err != nil {
			t.Fatal(err)
		}
	}
	st := e.Stats().Trust
	for k, n := range st.RateLimited {
		if n != 0 {
			t.Fatalf("%d %s requests refused", n, k)
		}
	}
	// (Its exchanges stall, since b answers none here: stalled_exchange
	// offences, not this test's concern.)
	if st.Offences[trust.RateLimit] != 0 {
		t.Fatalf("offences %v", st.Offences)
	}
}

// Invalid limits are refused by Validate.
func TestRateLimitsValidate(t *testing.T) {
	if err := engine.DefaultRateLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (engine.RateLimits{}).Validate(); err != nil {
		t.Fatalf("zero value: %v", err)
	}
	for _, bad := range []engine.RateLimits{
		{AEStart: engine.Rate{PerSecond: -1}},
		{Fetch: engine.Rate{Burst: -1}},
		{RumorPull: engine.Rate{PerSecond: math.NaN()}},
		{RumorPull: engine.Rate{PerSecond: math.Inf(1)}},
		{MaxPeers: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Fatalf("%+v accepted", bad)
		}
	}
	cfg := engine.DefaultConfig()
	cfg.Name, cfg.NodeID, cfg.Addr = "a", 1, "a:1"
	cfg.RateLimits.Fetch.PerSecond = -5
	if err := cfg.Validate(); err == nil {
		t.Fatal("engine config with a negative fetch rate accepted")
	}
}
