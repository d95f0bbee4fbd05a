package hearsay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/pebblestore"
)

// failingStore is a real store whose Sync fails with EIO once fail is set:
// a disk whose fsync fails.
type failingStore struct {
	store.Store
	fail atomic.Bool
}

func (f *failingStore) Sync() error {
	if f.fail.Load() {
		return &os.PathError{Op: "fsync", Path: "000001.log", Err: syscall.EIO}
	}
	return f.Store.Sync()
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

// TestFailedSyncIsNeverAcknowledged: once a sync fails, the write it
// covered is answered with ErrStorageFailed, never acknowledged; later
// writes are refused at once; records mailed by a peer are not
// acknowledged (they stay in the peer's outbox); reads go on; the node says
// why it is not ready; a restart recovers what was durable.
func TestFailedSyncIsNeverAcknowledged(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dirB := t.TempDir()
	openB := func() (*Node, *failingStore) {
		ps, err := pebblestore.Open(dirB, pebblestore.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		fs := &failingStore{Store: ps}
		cfg := DefaultConfig()
		cfg.Name, cfg.DataDir, cfg.BindAddr = "b", dirB, "127.0.0.1:0"
		n, err := open(cfg, log, fs)
		if err != nil {
			t.Fatal(err)
		}
		return n, fs
	}
	b, fs := openB()
	defer b.Close()
	cfgA := DefaultConfig()
	cfgA.Name, cfgA.DataDir, cfgA.BindAddr = "a", t.TempDir(), "127.0.0.1:0"
	cfgA.Seeds = []string{b.Status().Address}
	cfgA.Logger = log
	a, err := Open(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// Ready: joined, and each has measured its clock against the other
	// (a node with peers writes only then).
	eventually(t, 10*time.Second, "a and b joined and ready", func() bool { return a.Status().Ready && b.Status().Ready })

	if _, err := b.Put(ctx, []byte("durable"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	v, err := b.Put(ctx, []byte("lost"), []byte("2"))
	if !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("put whose sync failed: version %v, err %v; want ErrStorageFailed", v, err)
	}
	fs.fail.Store(false) // the disk seems fine again: the node must not believe it
	start := time.Now()
	if _, err := b.Put(ctx, []byte("later"), []byte("3")); !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("put after a failed sync: %v; want ErrStorageFailed", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("refusing a write took %v", d)
	}
	st := b.Status()
	if st.Ready || len(st.NotReady) == 0 || !strings.Contains(strings.Join(st.NotReady, "; "), "storage failed") {
		t.Fatalf("status after a failed sync: ready=%v reasons=%q", st.Ready, st.NotReady)
	}
	if e, err := b.Get(ctx, []byte("durable")); err != nil || string(e.Value) != "1" {
		t.Fatalf("read after a failed sync: %q, %v", e.Value, err)
	}
	// A peer's write reaches b by direct mail; b does not acknowledge it.
	if _, err := a.Put(ctx, []byte("from-a"), []byte("4")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a's mail to b left unacknowledged in a's outbox", func() bool { return a.Status().Outbox > 0 })
	if _, err := b.Get(ctx, []byte("from-a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b applied a record after its storage failed: %v", err)
	}

	if err := b.Close(); err != nil {
		t.Logf("close after a failed sync: %v", err)
	}
	b, _ = openB()
	defer b.Close()
	if e, err := b.Get(ctx, []byte("durable")); err != nil || string(e.Value) != "1" {
		t.Fatalf("acknowledged write after restart: %q, %v", e.Value, err)
	}
	// Restarted, b writes once it has rejoined a and measured its clock
	// against it (a restarted node does not trust its clock alone).
	eventually(t, 10*time.Second, "b ready after its restart", func() bool { return b.Status().Ready })
	if _, err := b.Put(ctx, []byte("after-restart"), []byte("5")); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
}
