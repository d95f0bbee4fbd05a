package pebblestore

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/tmpfs"
	"github.com/hearsaydb/hearsay/store"
)

// withDeadline runs fn and fails the test if it has not returned within d:
// a full disk must never make the store hang.
func withDeadline(t *testing.T, d time.Duration, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s has not returned after %v", what, d)
		return nil
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDiskFull fills a small tmpfs with records until the store refuses
// them, with values pebble compresses well and with values it cannot
// compress. The store must refuse writes with ErrNoSpace (never hang, never
// exit the process), keep serving reads, spend no CPU while full, take
// writes again after Recover once space is freed, and lose nothing that a
// successful Sync covered.
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value func(i int) []byte
	}{
		{"compressible", func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 64<<10) }},
		{"incompressible", func(int) []byte { b := make([]byte, 64<<10); _, _ = rand.Read(b); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := tmpfs.Mount(t, "32m")
			dir := filepath.Join(vol, "data")
			s, err := Open(dir, Options{Logger: testLogger(t), CacheSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			reserve := filepath.Join(dir, reserveFile)
			wantReserve(t, reserve, true)
			// Leave the store a few MiB (and its reserve) by filling most
			// of the volume.
			ballast := filepath.Join(vol, "ballast")
			f, _ := os.Create(ballast)
			_, _ = f.Write(make([]byte, 14<<20))
			_ = f.Close()

			acked := map[string][]byte{}
			var refused error
			for i := 0; i < 10000 && refused == nil; i++ {
				key := fmt.Sprintf("k%05d", i)
				val := tc.value(i)
				refused = withDeadline(t, 10*time.Second, "Apply", func() error {
					_, err := s.Apply([]store.Record{{Key: []byte(key), Value: val, Version: store.Version{HLC: uint64(i + 1), Node: 1}}})
					if err == nil {
						err = s.Sync()
					}
					return err
				})
				if refused == nil {
					acked[key] = val
				}
			}
			if !errors.Is(refused, store.ErrNoSpace) {
				t.Fatalf("writes on a full disk: %v, want an error wrapping store.ErrNoSpace", refused)
			}
			t.Logf("refused after %d records (%d MiB): %v", len(acked), len(acked)*64>>10, refused)
			if err := s.Health(); !errors.Is(err, store.ErrNoSpace) {
				t.Fatalf("Health on a full disk: %v", err)
			}
			// Its space went to the writes in flight.
			wantReserve(t, reserve, false)
			// Refused at once from now on, and no busy retrying.
			cpu0, t0 := cpuTime(), time.Now()
			tick := time.NewTicker(100 * time.Millisecond) // probes spread over 2 s
			defer tick.Stop()
			for i := range 20 {
				<-tick.C
				err := withDeadline(t, time.Second, "Apply on a full disk", func() error {
					_, err := s.Apply([]store.Record{{Key: []byte("more"), Value: []byte("x"), Version: store.Version{HLC: 1 << 40, Node: uint64(i + 1)}}})
					return err
				})
				if !errors.Is(err, store.ErrNoSpace) {
					t.Fatalf("Apply on a full disk: %v", err)
				}
			}
			if share := float64(cpuTime()-cpu0) / float64(time.Since(t0)); share > 0.10 {
				t.Errorf("a full store used %.0f%% of a core", share*100)
			} else {
				t.Logf("CPU while full: %.1f%% of a core", share*100)
			}
			for k, v := range acked {
				r, ok, err := s.Get([]byte(k))
				if err != nil || !ok || !bytes.Equal(r.Value, v) {
					t.Fatalf("read %s on a full disk: ok=%v err=%v", k, ok, err)
				}
			}

			if err := os.Remove(ballast); err != nil {
				t.Fatal(err)
			}
			if err := withDeadline(t, 10*time.Second, "Recover", s.Recover); err != nil {
				t.Fatalf("Recover after freeing space: %v", err)
			}
			wantReserve(t, reserve, true)
			if _, err := s.Apply([]store.Record{{Key: []byte("after"), Value: []byte("space"), Version: store.Version{HLC: 1 << 41, Node: 1}}}); err != nil {
				t.Fatalf("Apply after recovery: %v", err)
			}
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync after recovery: %v", err)
			}
			acked["after"] = []byte("space")
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s, err = Open(dir, Options{Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range acked {
				r, ok, err := s.Get([]byte(k))
				if err != nil || !ok || !bytes.Equal(r.Value, v) {
					t.Fatalf("acknowledged record %s lost after reopening: ok=%v err=%v", k, ok, err)
				}
			}
		})
	}
}

// wantReserve checks that the reserve file is in place, with its blocks
// allocated, or that it is gone.
func wantReserve(t *testing.T, path string, present bool) {
	t.Helper()
	var st syscall.Stat_t
	err := syscall.Stat(path, &st)
	switch {
	case present && err != nil:
		t.Fatalf("reserve file: %v", err)
	case present && st.Blocks*512 < DefaultReserve:
		t.Fatalf("reserve file holds %d bytes of the volume, want %d", st.Blocks*512, DefaultReserve)
	case !present && err == nil:
		t.Fatalf("reserve file still in place on a full disk (%d bytes)", st.Blocks*512)
	}
}

// testLogger logs to the test's output at info level and above.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestFlushOnFullDisk makes a memtable flush meet a full disk: pebble
// retries failed flushes, and the store must refuse writes meanwhile,
// without a busy retry loop, and take them again when a flush succeeds.
func TestFlushOnFullDisk(t *testing.T) {
	vol := tmpfs.Mount(t, "16m")
	dir := filepath.Join(vol, "data")
	s, err := Open(dir, Options{Logger: testLogger(t), CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 32 {
		key := fmt.Sprintf("k%05d", i)
		if _, err := s.Apply([]store.Record{{Key: []byte(key), Value: make([]byte, 32<<10), Version: store.Version{HLC: uint64(i + 1), Node: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(vol, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	_ = f.Close()
	if _, err := s.db.AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Health() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the store did not notice its flush failing for lack of space")
		}
		runtime.Gosched()
	}
	if _, err := s.Apply([]store.Record{{Key: []byte("more"), Value: []byte("x"), Version: store.Version{HLC: 1 << 40, Node: 1}}}); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("Apply while flushes fail: %v", err)
	}
	cpu0, t0 := cpuTime(), time.Now()
	<-time.After(3 * time.Second) // a window to measure CPU over, not an event
	if share := float64(cpuTime()-cpu0) / float64(time.Since(t0)); share > 0.10 {
		t.Errorf("failing flushes used %.0f%% of a core", share*100)
	} else {
		t.Logf("CPU while flushes fail: %.1f%% of a core", share*100)
	}
	if r, ok, err := s.Get([]byte("k00003")); err != nil || !ok || len(r.Value) != 32<<10 {
		t.Fatalf("read while flushes fail: ok=%v err=%v", ok, err)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(); err != nil {
		t.Fatal(err)
	}
	if err := withDeadline(t, 10*time.Second, "Flush", s.db.Flush); err != nil {
		t.Fatalf("flush once space is back: %v", err)
	}
	if _, err := s.Apply([]store.Record{{Key: []byte("more"), Value: []byte("x"), Version: store.Version{HLC: 1 << 40, Node: 1}}}); err != nil {
		t.Fatalf("Apply once space is back: %v", err)
	}
}
