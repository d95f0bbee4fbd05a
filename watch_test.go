package hearsay_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/store"
)

// next returns the next event from ch, failing the test after d.
func next(t *testing.T, ch <-chan hearsay.Event, d time.Duration) hearsay.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	panic("unreachable")
}

func openLogNode(t *testing.T, dir string, entries int) *hearsay.Node {
	t.Helper()
	cfg := hearsay.DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.BindAddr = "w1", dir, "127.0.0.1:0"
	cfg.ChangeLog = store.ChangeLogLimits{Entries: entries}
	n, err := hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func put(t *testing.T, n *hearsay.Node, key, value string) {
	t.Helper()
	if _, err := n.Put(context.Background(), []byte(key), []byte(value)); err != nil {
		t.Fatal(err)
	}
}

// wantEvent checks an event's key, value (or delete) and revision.
func wantEvent(t *testing.T, ev hearsay.Event, key, value string, deleted bool, rev uint64) {
	t.Helper()
	if string(ev.Key) != key || string(ev.Value) != value || ev.Deleted != deleted || ev.Revision != rev || ev.Snapshot {
		t.Fatalf("event %q=%q deleted=%v revision %d snapshot=%v, want %q=%q deleted=%v revision %d",
			ev.Key, ev.Value, ev.Deleted, ev.Revision, ev.Snapshot, key, value, deleted, rev)
	}
}

// TestWatchResumesAcrossRestart: events carry revisions; after a restart a
// watch resumes from a revision with exactly the changes since, from the
// change log, then live ones; from before the log, it gets a snapshot.
func TestWatchResumesAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	n := openLogNode(t, dir, 20)
	ch, err := n.Watch(ctx, []byte("a/"))
	if err != nil {
		t.Fatal(err)
	}
	base := n.Revision()
	put(t, n, "b/other", "x") // not under the prefix: a revision all the same
	for i := 1; i <= 3; i++ {
		put(t, n, fmt.Sprintf("a/%d", i), "v1")
	}
	for i := 1; i <= 3; i++ {
		wantEvent(t, next(t, ch, 5*time.Second), fmt.Sprintf("a/%d", i), "v1", false, base+1+uint64(i))
	}
	seen := base + 4
	if got := n.Revision(); got != seen {
		t.Fatalf("Revision = %d, want %d", got, seen)
	}
	// Changes the watcher misses: its program stopped, then the node did.
	put(t, n, "a/4", "v1")
	put(t, n, "a/2", "v2")
	if _, err := n.Delete(ctx, []byte("a/1")); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = openLogNode(t, dir, 20)
	defer func() { _ = n.Close() }()
	if got := n.Revision(); got != seen+3 {
		t.Fatalf("Revision after restart = %d, want %d", got, seen+3)
	}
	ch, err = n.Watch(ctx, []byte("a/"), hearsay.Since(seen))
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, next(t, ch, 5*time.Second), "a/4", "v1", false, seen+1)
	wantEvent(t, next(t, ch, 5*time.Second), "a/2", "v2", false, seen+2)
	wantEvent(t, next(t, ch, 5*time.Second), "a/1", "", true, seen+3)
	put(t, n, "a/5", "live")
	wantEvent(t, next(t, ch, 5*time.Second), "a/5", "live", false, seen+4)

	// Thirty more changes push the resume point out of the 20-entry log:
	// a snapshot of the current records, tombstones included.
	for i := range 30 {
		put(t, n, "b/filler", fmt.Sprint(i))
	}
	type kv struct {
		key, value string
		deleted    bool
	}
	want := []kv{{"a/1", "", true}, {"a/2", "v2", false}, {"a/3", "v1", false}, {"a/4", "v1", false}, {"a/5", "live", false}}
	for i, opt := range []hearsay.WatchOption{
		hearsay.Since(seen),                            // trimmed
		hearsay.Since(n.Revision() + 100),              // another node's
		hearsay.SinceNode("00000000000000ff", seen+10), // another node's, by id
	} {
		wctx, wcancel := context.WithCancel(ctx)
		ch, err := n.Watch(wctx, []byte("a/"), opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			ev := next(t, ch, 5*time.Second)
			if !ev.Snapshot || string(ev.Key) != w.key || string(ev.Value) != w.value || ev.Deleted != w.deleted || ev.Revision != 0 {
				t.Fatalf("snapshot event %+v, want %s=%q deleted=%v with no revision", ev, w.key, w.value, w.deleted)
			}
		}
		end := next(t, ch, 5*time.Second)
		if !end.Snapshot || end.Key != nil || end.Revision != n.Revision() {
			t.Fatalf("snapshot end %+v, want Snapshot, no key, revision %d", end, n.Revision())
		}
		after := fmt.Sprint("after", i)
		put(t, n, "a/6", after)
		wantEvent(t, next(t, ch, 5*time.Second), "a/6", after, false, end.Revision+1)
		wcancel()
		if i == 0 {
			want = append(want, kv{"a/6", "", false})
		}
		want[len(want)-1].value = after
	}
	// The same node's id resumes from the log.
	rev := n.Revision()
	put(t, n, "a/7", "x")
	ch, err = n.Watch(ctx, []byte("a/"), hearsay.SinceNode(n.Status().NodeID, rev))
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, next(t, ch, 5*time.Second), "a/7", "x", false, rev+1)
}

// TestWatchResumeUnderWrites resumes while writers keep writing: the
// events are every revision after the resume point, once each, in order.
func TestWatchResumeUnderWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := openLogNode(t, "", 0)
	defer func() { _ = n.Close() }()
	for i := range 50 {
		put(t, n, fmt.Sprintf("k/%d", i%7), fmt.Sprint(i))
	}
	since := n.Revision() - 25
	const writers, each = 4, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := n.Put(ctx, []byte(fmt.Sprintf("k/%d", (w*each+i)%11)), []byte(fmt.Sprint(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	ch, err := n.Watch(ctx, []byte("k/"), hearsay.Since(since))
	if err != nil {
		t.Fatal(err)
	}
	final := since + 25 + writers*each
	for want := since + 1; want <= final; want++ {
		ev := next(t, ch, 10*time.Second)
		if ev.Revision != want || ev.Snapshot {
			t.Fatalf("event at revision %d (snapshot %v), want revision %d", ev.Revision, ev.Snapshot, want)
		}
	}
	wg.Wait()
	select {
	case ev := <-ch:
		t.Fatalf("extra event %+v after the last write", ev)
	default:
	}
}
