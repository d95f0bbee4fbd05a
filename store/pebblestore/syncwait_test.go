package pebblestore

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/hearsaydb/hearsay/store"
)

// walGate is a file system whose write-ahead log syncs can be held (they
// wait until released) or made to fail with EIO: a slow and a failing
// disk, seen from the log writer.
type walGate struct {
	vfs.FS
	hold    atomic.Bool
	fail    atomic.Bool
	release chan struct{}
	syncs   atomic.Int64  // log syncs that have started
	held    chan struct{} // told of each sync held (when not nil)
}

func (g *walGate) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return gatedFile{File: f, g: g}, nil
}

func (g *walGate) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.Create(name, c)
	return g.wrap(name, f, err)
}

func (g *walGate) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.ReuseForWrite(oldname, newname, c)
	return g.wrap(newname, f, err)
}

func (g *walGate) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := g.FS.OpenReadWrite(name, c, opts...)
	return g.wrap(name, f, err)
}

type gatedFile struct {
	vfs.File
	g *walGate
}

func (f gatedFile) gate() error {
	f.g.syncs.Add(1)
	if f.g.hold.Load() {
		if f.g.held != nil {
			select {
			case f.g.held <- struct{}{}:
			default: // the test waits for the first one only
			}
		}
		<-f.g.release
	}
	if f.g.fail.Load() {
		return syscall.EIO
	}
	return nil
}

func (f gatedFile) Sync() error {
	if err := f.gate(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f gatedFile) SyncData() error {
	if err := f.gate(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f gatedFile) SyncTo(length int64) (bool, error) {
	if err := f.gate(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

// TestApplyOverlapsSync checks the write path's overlap: Apply returns while
// the log's fsync of its batch is still running (the loop can apply the
// next batch), and Sync does not return before that fsync has ended, so
// nothing is acknowledged before it is on disk. The metadata set before the
// Apply rides its batch: it is committed and synced with the records.
func TestApplyOverlapsSync(t *testing.T) {
	g := &walGate{FS: vfs.NewMem(), release: make(chan struct{}), held: make(chan struct{}, 1)}
	s, err := open("/data", Options{Logger: quiet}, g)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	g.hold.Store(true)
	before := g.syncs.Load()
	if err := s.SetMeta([]byte("hlc"), []byte{1}); err != nil {
		t.Fatal(err)
	}
	applied := make(chan error, 1)
	go func() {
		_, err := s.Apply([]store.Record{rec("k1", "v1", 1)})
		applied <- err
	}()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply waited for the log's fsync")
	}
	// Apply asked for the sync at once: the log writer is in its fsync (or
	// about to be), held.
	select {
	case <-g.held:
	case <-time.After(10 * time.Second):
		t.Fatal("no fsync of the log started after Apply")
	}
	if g.syncs.Load() == before {
		t.Fatal("a sync was held but none counted")
	}
	// The next batch applies while that fsync runs.
	if _, err := s.Apply([]store.Record{rec("k2", "v2", 1)}); err != nil {
		t.Fatal(err)
	}
	synced := make(chan error, 1)
	go func() { synced <- s.Sync() }()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned (%v) while the log's fsync was held", err)
	case <-time.After(200 * time.Millisecond): // a bounded check that it still waits
	}
	g.hold.Store(false)
	close(g.release)
	select {
	case err := <-synced:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sync did not return after the fsync was released")
	}
	if s.unsynced() {
		t.Fatal("Sync left something unsynced")
	}
	if v, ok, err := s.GetMeta([]byte("hlc")); err != nil || !ok || string(v) != "\x01" {
		t.Fatalf("GetMeta(hlc) = %q, %v, %v", v, ok, err)
	}
}

// TestFailedLogSyncFailsStore checks that a log fsync that fails after
// Apply returned is reported by Sync (so the writes are never
// acknowledged), and that the store then refuses writes and later Syncs:
// what the log holds is of unknown durability.
func TestFailedLogSyncFailsStore(t *testing.T) {
	g := &walGate{FS: vfs.NewMem(), release: make(chan struct{})}
	s, err := open("/data", Options{Logger: quiet}, g)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	g.fail.Store(true)
	if _, err := s.Apply([]store.Record{rec("k1", "v1", 1)}); err != nil {
		t.Fatalf("Apply: %v (the fsync runs after it returns)", err)
	}
	err = s.Sync()
	if !errors.Is(err, store.ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync after a failed log fsync: %v, want ErrFailed wrapping EIO", err)
	}
	if err := s.Sync(); !errors.Is(err, store.ErrFailed) {
		t.Fatalf("second Sync: %v, want ErrFailed", err)
	}
	if _, err := s.Apply([]store.Record{rec("k2", "v2", 1)}); !errors.Is(err, store.ErrFailed) {
		t.Fatalf("Apply after the failure: %v, want ErrFailed", err)
	}
	if err := s.SetMeta([]byte("m"), []byte("v")); !errors.Is(err, store.ErrFailed) {
		t.Fatalf("SetMeta after the failure: %v, want ErrFailed", err)
	}
}
