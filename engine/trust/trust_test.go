package trust

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestQuarantineAtThresholdAndReleaseAfterDecay(t *testing.T) {
	s := New(Config{})
	// Nine invalid records (weight 10) stay below the threshold of 100.
	for range 9 {
		if s.Offence(t0, "p", InvalidRecord) {
			t.Fatal("quarantined below the threshold")
		}
	}
	if s.Quarantined(t0, "p") {
		t.Fatal("quarantined at 90")
	}
	if !s.Offence(t0, "p", InvalidRecord) {
		t.Fatal("not quarantined at 100")
	}
	if got := s.Score(t0, "p"); got != -100 {
		t.Fatalf("score %v, want -100", got)
	}
	if ch := s.Changes(); len(ch) != 1 || !ch[0].Quarantined || ch[0].Peer != "p" || ch[0].Kind != InvalidRecord {
		t.Fatalf("changes %+v", ch)
	}
	// Half the threshold releases: one half-life (penalty 50) is not yet
	// below it, a little more is.
	if !s.Quarantined(t0.Add(DefaultHalfLife-time.Second), "p") {
		t.Fatal("released before its penalty decayed below half the threshold")
	}
	at := s.NextRelease(t0.Add(DefaultHalfLife - time.Second))
	if at.Before(t0.Add(DefaultHalfLife)) || at.After(t0.Add(DefaultHalfLife+time.Second)) {
		t.Fatalf("next release at %v, want about one half-life after the offence", at.Sub(t0))
	}
	s.Tick(at)
	if s.Quarantined(at, "p") || s.NumQuarantined() != 0 {
		t.Fatal("still quarantined after its penalty decayed below half the threshold")
	}
	if ch := s.Changes(); len(ch) != 1 || ch[0].Quarantined {
		t.Fatalf("changes %+v, want one release", ch)
	}
}

func TestRepeatOffenderStaysOutLonger(t *testing.T) {
	s := New(Config{})
	for range 10 {
		s.Offence(t0, "p", InvalidRecord)
	}
	first := s.NextRelease(t0).Sub(t0)
	s.Tick(t0.Add(first))
	now := t0.Add(first)
	for !s.Offence(now, "p", InvalidRecord) {
	}
	second := s.NextRelease(now).Sub(now)
	if second < first+DefaultHalfLife/2 {
		t.Fatalf("second quarantine %v, first %v: a repeat offender must stay out longer", second, first)
	}
}

func TestDisabledScoresButNeverQuarantines(t *testing.T) {
	s := New(Config{Disabled: true})
	for range 100 {
		if s.Offence(t0, "p", MemberFlood) {
			t.Fatal("quarantined with the defences off")
		}
	}
	if s.Quarantined(t0, "p") || s.Offences()[MemberFlood] != 100 || s.Score(t0, "p") > -100 {
		t.Fatalf("quarantined %v, offences %v, score %v", s.Quarantined(t0, "p"), s.Offences(), s.Score(t0, "p"))
	}
}

func TestHonestRateUnderLossStaysBelowThreshold(t *testing.T) {
	// An honest prober under 20% loss: about 7% of its probes fail and
	// are refuted. Even if every one of them reached this node first hand,
	// at one probe a second for an hour the penalty stays below half the
	// threshold.
	s := New(Config{})
	now := t0
	for i := range 3600 {
		now = now.Add(time.Second)
		if i%14 == 0 {
			s.Offence(now, "honest", RefutedAccusation)
		}
		if i%20 == 0 {
			s.Offence(now, "honest", StalledExchange)
		}
	}
	if sc := s.Score(now, "honest"); sc < -DefaultThreshold/2 {
		t.Fatalf("honest peer's score %v", sc)
	}
}

func TestBounded(t *testing.T) {
	s := New(Config{MaxPeers: 3})
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		s.Offence(t0, p, StalledExchange)
	}
	if s.Tracked() != 3 {
		t.Fatalf("%d peers tracked, bound 3", s.Tracked())
	}
	s.Offence(t0, "x", "no such kind")
	if got := s.Offences(); got[BadProtocol] != 1 || len(got) != len(Kinds) {
		t.Fatalf("offences %v: an unknown kind counts as %s", got, BadProtocol)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Threshold: -1}, {HalfLife: -time.Second}, {MaxPeers: -1}, {Weights: map[string]float64{"nope": 1}}, {Weights: map[string]float64{InvalidRecord: -1}}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}
