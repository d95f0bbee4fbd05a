package engine

import (
	"fmt"
	"testing"
	"time"
)

// The buckets kept are bounded by MaxPeers whatever the names a flooder
// makes up, and those that have refilled are swept.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter(RateLimits{MaxPeers: 8})
	now := time.Unix(1000, 0)
	for i := range 1000 {
		if ok, _ := l.take(now, fmt.Sprintf("p%d", i), limFetch); !ok {
			t.Fatalf("p%d refused its first fetch", i)
		}
		if len(l.peers) > 8 {
			t.Fatalf("%d peers kept, bound 8", len(l.peers))
		}
	}
	// A peer that spent its burst is kept until it has refilled.
	for range DefaultFetchRate.Burst + 1 {
		l.take(now, "flooder", limFetch)
	}
	l.sweep(now.Add(time.Second))
	if l.peers["flooder"] == nil {
		t.Fatal("a peer with an empty bucket forgotten")
	}
	refill := time.Duration(float64(DefaultFetchRate.Burst)/DefaultFetchRate.PerSecond*float64(time.Second)) + time.Second
	l.sweep(now.Add(refill))
	if len(l.peers) != 0 {
		t.Fatalf("%d peers kept after every bucket refilled", len(l.peers))
	}
}

// A member that dies or leaves takes its buckets with it.
func TestLimiterForgetsDeadMember(t *testing.T) {
	l := newLimiter(RateLimits{})
	now := time.Unix(1000, 0)
	l.take(now, "b", limAEStart)
	l.forget("b")
	if len(l.peers) != 0 {
		t.Fatal("buckets kept after forget")
	}
}

// Disabled serves everything and scores nothing.
func TestLimiterDisabled(t *testing.T) {
	l := newLimiter(RateLimits{Disabled: true})
	now := time.Unix(1000, 0)
	for range 10_000 {
		if ok, score := l.take(now, "b", limAEStart); !ok || score {
			t.Fatal("disabled limiter refused")
		}
	}
}
