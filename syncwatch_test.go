package hearsay

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/pebblestore"
)

// TestSyncWatchStats: the window's count, max and p99 (within the 9% of a
// bin), the slots that leave the window, a sync in progress.
func TestSyncWatchStats(t *testing.T) {
	var w syncWatch
	t0 := time.Unix(1_800_000_000, 0)
	if l := w.stats(t0); l.Count != 0 || l.Max != 0 || l.P99 != 0 || l.Running != 0 {
		t.Fatalf("empty: %+v", l)
	}
	// 990 fast syncs and 10 slow ones, spread over 30 s.
	for i := range 1000 {
		d := 2 * time.Millisecond
		if i%100 == 0 {
			d = 1500 * time.Millisecond
		}
		w.observe(t0.Add(time.Duration(i)*30*time.Millisecond), d)
	}
	now := t0.Add(30 * time.Second)
	l := w.stats(now)
	if l.Count != 1000 || l.Max != 1.5 {
		t.Fatalf("count %d max %v, want 1000 and 1.5", l.Count, l.Max)
	}
	// The 990th of 1000 is a fast one; the 991st a slow one.
	if l.P99 < 0.002 || l.P99 > 0.002*1.0905 {
		t.Fatalf("p99 of 990 fast and 10 slow = %v, want 2 ms (+9%%)", l.P99)
	}
	w.observe(now, 1500*time.Millisecond)
	if l := w.stats(now); l.P99 < 1.5/1.0905 || l.P99 > 1.5 {
		t.Fatalf("p99 with 11 slow of 1001 = %v, want 1.5 s (-9%%)", l.P99)
	}
	// A minute and a slot later, the early slots are gone.
	later := t0.Add(syncWindowLen + slotLen())
	if l := w.stats(later); l.Count >= 1001 || l.Count == 0 {
		t.Fatalf("count after the first slot left the window: %d", l.Count)
	}
	if l := w.stats(now.Add(syncWindowLen + slotLen())); l.Count != 0 || l.Max != 0 {
		t.Fatalf("window after a quiet minute: %+v", l)
	}
	w.begin(now)
	if l := w.stats(now.Add(3 * time.Second)); l.Running != 3 {
		t.Fatalf("running: %v, want 3", l.Running)
	}
	w.end()
	if l := w.stats(now.Add(3 * time.Second)); l.Running != 0 {
		t.Fatalf("running after end: %v", l.Running)
	}
}

// slowStore is a real store whose syncs take delay longer: a slow disk.
// It keeps the disk reporting of the store it wraps.
type slowStore struct {
	*pebblestore.Store
	delay atomic.Int64 // nanoseconds
}

func (s *slowStore) Sync() error {
	time.Sleep(time.Duration(s.delay.Load())) // the injected fault: a slow fsync
	return s.Store.Sync()
}

var _ store.Store = (*slowStore)(nil)

// syncedLog is a log buffer safe for the node's goroutines.
type syncedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncedLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestSlowSyncReported: a node whose syncs take longer than
// Config.SlowSync says so in its status (slow_sync, sync_seconds, a
// not-ready reason), also while a sync is in progress, logs it once, keeps
// taking writes, and recovers by itself once its syncs are fast again
// and the slow ones have left the window.
func TestSlowSyncReported(t *testing.T) {
	defer func(w time.Duration) { syncWindowLen = w }(syncWindowLen)
	syncWindowLen = 3 * time.Second // so that recovery takes seconds, not a minute
	ctx := context.Background()
	var logs syncedLog
	log := slog.New(slog.NewTextHandler(&logs, nil))
	dir := t.TempDir()
	ps, err := pebblestore.Open(dir, pebblestore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowStore{Store: ps}
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.BindAddr = "slow", dir, "127.0.0.1:0"
	cfg.SlowSync = 100 * time.Millisecond
	n, err := open(cfg, log, slow)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Put(ctx, []byte("fast"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	st := n.Status()
	if !st.Ready || st.SlowSync || st.SyncSeconds == nil || st.SyncSeconds.Count == 0 {
		t.Fatalf("fast disk: ready=%v slow=%v sync=%+v reasons=%q", st.Ready, st.SlowSync, st.SyncSeconds, st.NotReady)
	}

	// A sync in progress longer than the bound is reported before it ends.
	slow.delay.Store(int64(time.Second))
	done := make(chan error, 1)
	go func() { _, err := n.Put(ctx, []byte("stuck"), []byte("2")); done <- err }()
	eventually(t, 5*time.Second, "the sync in progress reported", func() bool {
		st := n.Status()
		return st.SlowSync && strings.Contains(strings.Join(st.NotReady, ";"), "the sync in progress has run for")
	})
	if err := <-done; err != nil {
		t.Fatalf("a write on a slow disk: %v", err)
	}

	// Slow syncs: reported with their p99.
	slow.delay.Store(int64(200 * time.Millisecond))
	for i := range 3 {
		if _, err := n.Put(ctx, []byte{'k', byte(i)}, []byte("v")); err != nil {
			t.Fatalf("a write on a slow disk: %v", err)
		}
	}
	st = n.Status()
	reasons := strings.Join(st.NotReady, "; ")
	if !st.SlowSync || st.Ready || !strings.Contains(reasons, "disk: slow syncs: p99") || !strings.Contains(reasons, "--slow-sync 100ms") ||
		st.SyncSeconds.P99 < 0.15 || st.SyncSeconds.Max < 0.2 {
		t.Fatalf("slow disk: ready=%v slow=%v sync=%+v reasons=%q", st.Ready, st.SlowSync, st.SyncSeconds, st.NotReady)
	}
	eventually(t, 5*time.Second, "the slow disk logged", func() bool { return logs.count("slow disk: syncs are slower") > 0 })

	// Fast again: recovered once the window has moved past the slow ones.
	slow.delay.Store(0)
	eventually(t, 3*syncWindowLen, "recovered", func() bool {
		if _, err := n.Put(ctx, []byte("again"), []byte("3")); err != nil {
			t.Fatalf("put: %v", err)
		}
		st := n.Status()
		return st.Ready && !st.SlowSync
	})
	eventually(t, 5*time.Second, "recovery logged", func() bool { return logs.count("syncs are fast again") == 1 })
	// Logged once while slow: the next reminder is a minute away.
	if c := logs.count("slow disk: syncs are slower"); c != 1 {
		t.Errorf("slow disk logged %d times in a few seconds, want 1", c)
	}
}
