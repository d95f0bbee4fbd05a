package hlc

import (
	"testing"
	"time"
)

func TestMonotonicWhenWallClockStallsOrGoesBack(t *testing.T) {
	var c Clock
	base := time.UnixMilli(1_700_000_000_000)
	prev := c.Now(base)
	for i, d := range []time.Duration{0, 0, -time.Second, -time.Hour, time.Millisecond, 0} {
		ts := c.Now(base.Add(d))
		if ts <= prev {
			t.Fatalf("step %d: timestamp %x not after %x", i, ts, prev)
		}
		prev = ts
	}
}

func TestNowTracksPhysicalTime(t *testing.T) {
	var c Clock
	now := time.UnixMilli(1_700_000_000_123)
	ts := c.Now(now)
	if Physical(ts) != 1_700_000_000_123 || Logical(ts) != 0 {
		t.Fatalf("got physical %d logical %d", Physical(ts), Logical(ts))
	}
	if !Time(ts).Equal(now) {
		t.Fatalf("Time = %v, want %v", Time(ts), now)
	}
}

func TestObserveMovesClockPastRemote(t *testing.T) {
	var c Clock
	now := time.UnixMilli(1_000)
	remote := Pack(5_000, 7)
	c.Observe(remote)
	if ts := c.Now(now); ts <= remote {
		t.Fatalf("timestamp %x not after observed %x", ts, remote)
	}
	// An older remote changes nothing.
	before := c.Last()
	c.Observe(Pack(1, 0))
	if c.Last() != before {
		t.Fatal("observing an older timestamp moved the clock")
	}
}

func TestLogicalOverflowCarries(t *testing.T) {
	var c Clock
	now := time.UnixMilli(42)
	c.Observe(Pack(42, logicalMask))
	ts := c.Now(now)
	if Physical(ts) != 43 || Logical(ts) != 0 {
		t.Fatalf("overflow gave physical %d logical %d", Physical(ts), Logical(ts))
	}
}
