package hearsay

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time this process has used, user and system.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestZeroConfigWorks: a Config built without DefaultConfig, with only a
// name, a data directory, an address and seeds, gets the protocol defaults:
// the nodes join, replicate, and idle without spinning (a zero protocol
// config used to burn 600 ms of CPU a second and send a Join every tick).
func TestZeroConfigWorks(t *testing.T) {
	ctx := context.Background()
	a, err := Open(Config{Name: "a", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(Config{Name: "b", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Seeds: []string{a.Status().Address}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Ready and each in the other's view: a node alone is ready before
	// its first peer joins, and then measures that peer's clock before it
	// writes again ("clock offset: not measured yet").
	sees := func(n *Node, name string) bool {
		for _, m := range n.Members() {
			if m.Name == name && m.State == StateAlive {
				return true
			}
		}
		return false
	}
	eventually(t, 10*time.Second, "both ready, each seeing the other", func() bool {
		return a.Status().Ready && b.Status().Ready && sees(a, "b") && sees(b, "a")
	})
	// A write refused for the clock (its first measurement, or an offset
	// read off round trips slowed by a loaded machine) is refused, not
	// lost: the node says so, and a retry succeeds once it is measured.
	var putErr error
	defer func() {
		if t.Failed() && putErr != nil {
			t.Logf("last write refused: %v", putErr)
		}
	}()
	eventually(t, 10*time.Second, "a write accepted", func() bool {
		_, putErr = a.Put(ctx, []byte("k"), []byte("v"))
		if putErr != nil && !errors.Is(putErr, ErrClockOffset) {
			t.Fatalf("write refused: %v", putErr)
		}
		return putErr == nil
	})
	eventually(t, 10*time.Second, "the write on b", func() bool {
		e, err := b.Get(ctx, []byte("k"))
		return err == nil && string(e.Value) == "v"
	})
	// Idle: the two nodes together, over 3 s once the write has spread.
	eventually(t, 10*time.Second, "quiet", func() bool { return a.Status().Outbox == 0 })
	start, cpu0 := time.Now(), processCPU(t)
	idle := time.NewTimer(3 * time.Second) // the measurement window, not a wait for an event
	<-idle.C
	share := float64(processCPU(t)-cpu0) / float64(time.Since(start))
	t.Logf("two idle nodes: %.2f%% of a core", share*100)
	// Generous for the race detector and a busy machine; the spin was 60%.
	if share > 0.10 {
		t.Fatalf("two idle nodes use %.1f%% of a core", share*100)
	}
}
