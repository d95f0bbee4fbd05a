package hearsay_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
)

// nextEvent waits for an event about member of the given kind, skipping
// others, until the deadline.
func nextEvent(t *testing.T, ch <-chan hearsay.MemberEvent, member string, kind hearsay.MemberEventKind, d time.Duration) hearsay.MemberEvent {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed while waiting for %s %s", member, kind)
			}
			if ev.Member.Name == member && ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event for %s within %v", kind, member, d)
		}
	}
}

func fastNode(t *testing.T, name string, seeds ...string) *hearsay.Node {
	t.Helper()
	cfg := hearsay.DefaultConfig()
	cfg.Name = name
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Seeds = seeds
	mc := &cfg.Protocol.Membership
	mc.ProbeInterval, mc.ProbeTimeout, mc.SuspicionTimeout = 100*time.Millisecond, 50*time.Millisecond, 300*time.Millisecond
	n, err := hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestMemberEventsThroughDNSSeed joins through a DNS name (localhost) and
// follows a member's life in n1's event stream: joined, then, once it is
// closed without leaving, suspect and dead.
func TestMemberEventsThroughDNSSeed(t *testing.T) {
	n1 := fastNode(t, "n1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := n1.MemberEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(n1.Status().Address)
	if err != nil {
		t.Fatal(err)
	}
	n2 := fastNode(t, "n2", net.JoinHostPort("localhost", port))
	ev := nextEvent(t, events, "n2", hearsay.MemberJoined, 10*time.Second)
	if ev.Member.State != hearsay.StateAlive || ev.Member.Self {
		t.Fatalf("joined event %+v", ev)
	}
	waitFor(t, 10*time.Second, "n2 to see n1", func() bool { return n2.Status().Alive == 2 })
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, "n2", hearsay.MemberSuspect, 10*time.Second)
	ev = nextEvent(t, events, "n2", hearsay.MemberDead, 10*time.Second)
	if ev.Prev != hearsay.StateSuspect {
		t.Fatalf("dead event %+v", ev)
	}
	cancel()
	for range events { // closed once ctx is done
	}
}
