package hearsay_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

func openNode(t *testing.T, name string, dir string, seeds ...string) *hearsay.Node {
	t.Helper()
	return openNodeWith(t, name, dir, seeds, nil)
}

// openNodeWith opens a node on a loopback port with a long suspicion
// timeout, adjusted by adjust if given, closed when the test ends.
func openNodeWith(t *testing.T, name, dir string, seeds []string, adjust func(*hearsay.Config)) *hearsay.Node {
	t.Helper()
	cfg := hearsay.DefaultConfig()
	cfg.Name = name
	cfg.DataDir = dir
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Seeds = seeds
	cfg.Protocol.Membership.SuspicionTimeout = time.Minute
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func TestThreeNodesReplicate(t *testing.T) {
	ctx := context.Background()
	n1 := openNode(t, "n1", t.TempDir())
	addr := n1.Status().Address
	n2 := openNode(t, "n2", "", addr)
	n3 := openNode(t, "n3", t.TempDir(), addr)
	for _, n := range []*hearsay.Node{n1, n2, n3} {
		waitFor(t, 10*time.Second, "membership", func() bool { return n.Status().Alive == 3 })
	}
	v, err := n2.Put(ctx, []byte("greeting"), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*hearsay.Node{n1, n3} {
		waitFor(t, 10*time.Second, "replication", func() bool {
			e, err := n.Get(ctx, []byte("greeting"))
			return err == nil && string(e.Value) == "hello" && e.Version == v
		})
	}
	if _, err := n3.Delete(ctx, []byte("greeting")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "delete replication", func() bool {
		_, err := n1.Get(ctx, []byte("greeting"))
		return errors.Is(err, hearsay.ErrNotFound)
	})
}

func TestWatchSeesRemoteWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n1 := openNode(t, "n1", "")
	n2 := openNode(t, "n2", "", n1.Status().Address)
	waitFor(t, 10*time.Second, "membership", func() bool { return n1.Status().Alive == 2 && n2.Status().Alive == 2 })
	ch, err := n2.Watch(ctx, []byte("app/"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Put(ctx, []byte("other"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Put(ctx, []byte("app/a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if string(ev.Key) != "app/a" || string(ev.Value) != "1" || ev.Deleted {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	cancel()
	for range ch { // closed once ctx is done
	}
}

func TestBadInputIsRefused(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, "n1", "")
	if _, err := n.Put(ctx, nil, []byte("v")); !errors.Is(err, hearsay.ErrEmptyKey) {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := n.Put(ctx, make([]byte, 2000), []byte("v")); !errors.Is(err, hearsay.ErrKeyTooLarge) {
		t.Fatalf("long key: %v", err)
	}
	if _, err := n.Put(ctx, []byte("k"), make([]byte, 2<<20)); !errors.Is(err, hearsay.ErrValueTooLarge) {
		t.Fatalf("large value: %v", err)
	}
	if _, err := n.Get(ctx, []byte("absent")); !errors.Is(err, hearsay.ErrNotFound) {
		t.Fatalf("absent key: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, hearsay.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := hearsay.DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.BindAddr = "n1", dir, "127.0.0.1:0"
	n, err := hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := n.Put(ctx, []byte(fmt.Sprintf("k%03d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	id := n.Status().NodeID
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n, err = hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := n.Status().NodeID; got != id {
		t.Fatalf("node id changed across restart: %s then %s", id, got)
	}
	es, err := n.Scan(ctx, []byte("k"), nil, 0)
	if err != nil || len(es) != 100 {
		t.Fatalf("scan after restart: %d entries, %v", len(es), err)
	}
}

func TestConcurrentWritersGroupCommit(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, "n1", t.TempDir())
	errs := make(chan error, 64)
	for w := range 64 {
		go func() {
			for i := range 20 {
				if _, err := n.Put(ctx, []byte(fmt.Sprintf("w%02d/%02d", w, i)), []byte("v")); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	es, err := n.Scan(ctx, []byte("w"), nil, 0)
	if err != nil || len(es) != 64*20 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
}

// Nodes holding the cluster key gossip; a node with another key (or none)
// can neither join nor inject writes, and is counted as an auth failure.
func TestSecretKeyKeepsStrangersOut(t *testing.T) {
	ctx := context.Background()
	key := []byte("0123456789abcdef0123456789abcdef")
	open := func(name string, k []byte, seeds ...string) *hearsay.Node {
		cfg := hearsay.DefaultConfig()
		cfg.Name, cfg.BindAddr, cfg.Seeds, cfg.SecretKey = name, "127.0.0.1:0", seeds, k
		n, err := hearsay.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	n1 := open("n1", key)
	n2 := open("n2", key, n1.Status().Address)
	waitFor(t, 10*time.Second, "keyed members", func() bool { return n1.Status().Alive == 2 && n2.Status().Alive == 2 })
	for _, stranger := range []struct {
		name string
		key  []byte
	}{{"wrong-key", []byte("fedcba9876543210fedcba9876543210")}, {"no-key", nil}} {
		s := open(stranger.name, stranger.key, n1.Status().Address)
		jctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.Join(jctx, []string{n1.Status().Address})
		cancel()
		if err == nil {
			t.Fatalf("%s joined a keyed cluster", stranger.name)
		}
		if _, err := s.Put(ctx, []byte("injected"), []byte(stranger.name)); err != nil {
			t.Fatal(err)
		}
	}
	// A keyed write still replicates; the strangers' writes never arrive.
	if _, err := n1.Put(ctx, []byte("marker"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "keyed replication", func() bool { _, err := n2.Get(ctx, []byte("marker")); return err == nil })
	for _, n := range []*hearsay.Node{n1, n2} {
		if _, err := n.Get(ctx, []byte("injected")); !errors.Is(err, hearsay.ErrNotFound) {
			t.Fatalf("%s accepted a stranger's write: %v", n.Status().Name, err)
		}
		if got := n.Status().Members; got != 2 {
			t.Fatalf("%s lists %d members, want 2", n.Status().Name, got)
		}
	}
}
