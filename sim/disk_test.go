package sim

import (
	"errors"
	"testing"
	"time"
)

// TestCrashLosesUnsyncedWrites: a write is acknowledged only once its sync
// completes; a crash before loses it (the client learns ErrCrashed), a
// crash after keeps it.
func TestCrashLosesUnsyncedWrites(t *testing.T) {
	c := New(Options{Seed: 1})
	n, err := c.AddNode("n0", nil)
	if err != nil {
		t.Fatal(err)
	}
	n.SyncDelay = 10 * time.Millisecond
	var early error = errors.New("not told")
	if _, err := n.Write("early", "v", false, func(err error) { early = err }); err != nil {
		t.Fatal(err)
	}
	if early == nil {
		t.Fatal("acknowledged before its sync completed")
	}
	n.Crash()
	if !errors.Is(early, ErrCrashed) {
		t.Fatalf("the client of a write lost in a crash learned %v", early)
	}
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Get("early"); ok {
		t.Fatal("a write never synced survived the crash")
	}
	var late error = errors.New("not told")
	if _, err := n.Write("late", "v", false, func(err error) { late = err }); err != nil {
		t.Fatal(err)
	}
	if err := c.RunFor(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if late != nil {
		t.Fatalf("write not acknowledged after its sync: %v", late)
	}
	n.Crash()
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if r, ok := n.Get("late"); !ok || string(r.Value) != "v" {
		t.Fatal("an acknowledged write was lost in a crash")
	}
}

// TestFailingStore: a full disk refuses writes (not acknowledged, not
// counted as lost), a failing sync stops its node, and once the disks are
// fixed and the node restarted every invariant holds.
func TestFailingStore(t *testing.T) {
	s := DefaultScenario()
	s.Nodes, s.Model, s.Sampler, s.Mechanism, s.Direction = 4, "async", "real", "direct-mail+anti-entropy", "push-pull"
	s.Duration, s.Suspicion, s.SyncDelay = Duration(20*time.Second), Duration(2*time.Second), Duration(5*time.Millisecond)
	s.Workload = Workload{Rate: 20, Keys: 10, Deletes: 0.2}
	delay := Duration(5 * time.Millisecond)
	s.Events = []Event{
		{At: Duration(2 * time.Second), Storage: &StorageSpec{Nodes: NodeSet{Names: NodeList{"n1"}}, Full: true}},
		{At: Duration(4 * time.Second), Storage: &StorageSpec{Nodes: NodeSet{Names: NodeList{"n2"}}, SyncError: true}},
		{At: Duration(8 * time.Second), Storage: &StorageSpec{Nodes: NodeSet{Fraction: 1}, SyncDelay: &delay}},
		{At: Duration(8 * time.Second), Restart: &NodeSet{Fraction: 1}},
	}
	rep, err := Run(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Runs[0]
	t.Logf("refused %d, fail-stops %d, acknowledged %d, unacknowledged %d, settled %.1f s", r.StorageRefused, r.FailStops, r.Acknowledged, r.Unacknowledged, r.Settled)
	if r.StorageRefused == 0 || r.FailStops != 1 || r.Restarts != 1 {
		t.Fatalf("want writes refused by the full disk and one fail-stop and restart: %+v", r)
	}
}
