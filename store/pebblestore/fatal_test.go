package pebblestore

import (
	"errors"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/store"
)

// TestBackgroundFatalParks: pebble's Fatalf on one of its own goroutines (a
// compaction that cannot write its manifest on a full disk) must not crash
// the process: the store is marked failed, refuses writes, and that
// goroutine parks. (fatal is itself a method of Store; it once took its own
// frame for a caller that recovers, and the agent exited.)
func TestBackgroundFatalParks(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if calledFromStore() {
		t.Fatal("a test goroutine taken for a Store method")
	}
	go s.fatal("MANIFEST write failed: %v", []any{errors.New("no space left on device")})
	deadline := time.Now().Add(10 * time.Second)
	for s.fail.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the store was not marked failed")
		}
		time.Sleep(time.Millisecond) // polling a flag, not waiting for an event
	}
	_, err = s.Apply([]store.Record{{Key: []byte("k"), Value: []byte("v"), Version: store.Version{HLC: 1, Node: 1}}})
	if !errors.Is(err, store.ErrFailed) {
		t.Fatalf("write after a background failure: %v, want ErrFailed", err)
	}
}
