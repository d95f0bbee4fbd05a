package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/hearsaydb/hearsay/store"
)

// How the store behaves when its disk fails it.
//
// Pebble reports a failed WAL write or sync on the commit path through
// Logger.Fatalf and leaves its commit pipeline unusable; it reports a failed
// flush or compaction through EventListener.BackgroundError and retries the
// flush at once, in a loop. The store turns both into states:
//
//   - no space: a write, a flush or a compaction met ENOSPC. Writes are
//     refused with store.ErrNoSpace at once, before they reach pebble; reads
//     go on. A failed flush or compaction is retried by pebble at most once
//     per flushRetryPause (doubling), and fails before doing any work while
//     the state lasts. Only Recover clears it (a flush that succeeds does
//     not: flushes of small tables may succeed while compactions fail, and
//     taking writes then piles up level-0 tables until pebble stalls
//     commits). A failed commit (WAL write) leaves pebble unusable for writes: Recover, called
//     once space has been freed, closes and reopens the database, which
//     replays what reached the log.
//   - reserve: the store keeps a file of Options.ReserveBytes (8 MiB) in
//     the data directory and deletes it at the first ENOSPC. A commit that
//     entered pebble just before the disk filled may be stalled waiting
//     for a memtable flush, which needs room: the reserve's space lets that
//     flush, and so the commit, complete at once (measured: without it the
//     event loop waited 2.5 s, and could wait until space was freed).
//     Tables may be created in that space until they meet ENOSPC again;
//     Recover puts the reserve back before the store takes writes again.
//   - failed: any other commit failure (an fsync error, which on Linux may
//     have dropped dirty pages without a trace) or any failure pebble
//     reports from a background goroutine through Fatalf. Every write is
//     refused with store.ErrFailed until the process reopens the store;
//     nothing is retried.

// DefaultReserve is the size of the reserve file when
// Options.ReserveBytes is 0: two of pebble's 4 MiB memtables, the most a
// commit stalled on the memtable limit waits to see flushed.
const DefaultReserve = 8 << 20

// reserveFile is the name of the reserve file in the data directory.
const reserveFile = "hearsay-reserve"

// flushRetryPause is how long a write that met ENOSPC is held before it is
// retried and fails, doubled up to eight times that while the disk stays full: without it, pebble retries a flush that meets a full
// disk in a tight loop (two cores and hundreds of log lines a second were
// measured).
const flushRetryPause = time.Second

// logInterval bounds how often the store logs the same kind of storage
// error.
const logInterval = time.Second

// fatalPanic carries a Fatalf from pebble up to the Store method that
// called into pebble, which recovers it.
type fatalPanic struct{ err error }

// failure is a sticky store failure.
type failure struct {
	err error
	// background is true when pebble failed in one of its own goroutines,
	// which Fatalf then parks forever: the database cannot be closed.
	background bool
}

// classify wraps cause in store.ErrNoSpace when it is an ENOSPC, else in
// store.ErrFailed.
func classify(cause error) error {
	if isNoSpace(cause) {
		return fmt.Errorf("%w: %w", store.ErrNoSpace, cause)
	}
	return fmt.Errorf("%w: %w", store.ErrFailed, cause)
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, store.ErrNoSpace)
}

// fatal handles pebble's Fatalf. Called on the goroutine of a Store method
// (a commit), it panics with a fatalPanic that the method recovers. Called
// on one of pebble's own goroutines, which cannot be unwound safely, it
// marks the store failed and parks that goroutine forever, as pebble
// expects of Fatalf; the process goes on serving reads.
func (s *Store) fatal(msg string, args []any) {
	var cause error
	for _, a := range args {
		if e, ok := a.(error); ok {
			cause = fmt.Errorf("%s: %w", msg, e)
			break
		}
	}
	if cause == nil {
		cause = errors.New(msg)
	}
	if calledFromStore() {
		panic(fatalPanic{err: classify(cause)})
	}
	err := fmt.Errorf("%w: %w", store.ErrFailed, cause)
	s.fail.CompareAndSwap(nil, &failure{err: err, background: true})
	s.log.Error("storage failed in the background: the store refuses writes until the process restarts", "dir", s.dir, "err", err)
	select {}
}

// calledFromStore reports whether the current goroutine is inside a method
// of Store, which recovers a fatalPanic. Only pebble's Fatalf calls it, so
// its cost does not matter.
func calledFromStore() bool {
	buf := make([]byte, 64<<10)
	buf = buf[:runtime.Stack(buf, false)]
	for _, line := range bytes.Split(buf, []byte("\n")) {
		// fatal itself is a method of Store, on every stack that gets
		// here: only another method of Store (one that recovers) counts.
		if bytes.Contains(line, []byte("pebblestore.(*Store).")) && !bytes.Contains(line, []byte("pebblestore.(*Store).fatal(")) {
			return true
		}
	}
	return false
}

// guard runs fn, a write to pebble, unless the store refuses writes; it
// turns a failure pebble reports by Fatalf or by panicking into a sticky
// state and an error. Sync passes
// allowNoSpace: an fsync of what is already in the log needs no new space
// (or fails, and then the store is recovered like any failed commit).
func (s *Store) guard(allowNoSpace bool, fn func() error) (err error) {
	if f := s.fail.Load(); f != nil {
		return fmt.Errorf("writes refused: %w", f.err)
	}
	if !allowNoSpace && s.noSpace.Load() {
		return fmt.Errorf("writes refused: %w (%s)", store.ErrNoSpace, s.dir)
	}
	if s.walFull.Load() {
		// No commit may enter pebble now (see walFull): the store is
		// failed until Recover reopens it.
		cause := fmt.Errorf("%w: the write-ahead log of %s met a full disk", store.ErrNoSpace, s.dir)
		s.noSpace.Store(true)
		s.fail.CompareAndSwap(nil, &failure{err: cause})
		s.logFailure(cause)
		return cause
	}
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		var cause error
		switch r := r.(type) {
		case fatalPanic:
			cause = r.err
		case error:
			// commitWrite panics with the error of a large batch's WAL write.
			cause = classify(r)
		default:
			panic(r)
		}
		if isNoSpace(cause) {
			s.noSpace.Store(true)
		}
		s.fail.CompareAndSwap(nil, &failure{err: cause})
		s.logFailure(cause)
		err = cause
	}()
	if err := fn(); err != nil {
		if isNoSpace(err) {
			s.noSpace.Store(true)
			return fmt.Errorf("%w: %w", store.ErrNoSpace, err)
		}
		return err
	}
	return nil
}

// fullFS is the file system pebble runs on: it reports every write that
// meets ENOSPC to the store before the error reaches pebble, so the store
// refuses writes from then on without waiting for pebble to notice.
type fullFS struct {
	vfs.FS
	s *Store
}

func (f fullFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.refuse(name, c); err != nil {
		return nil, err
	}
	file, err := f.FS.Create(name, c)
	return f.wrap(name, file, err)
}

func (f fullFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	file, err := f.FS.OpenReadWrite(name, c, opts...)
	return f.wrap(name, file, err)
}

func (f fullFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.refuse(newname, c); err != nil {
		return nil, err
	}
	file, err := f.FS.ReuseForWrite(oldname, newname, c)
	return f.wrap(newname, file, err)
}

// refuse fails the creation of a table (by a flush or a compaction) while
// the store is out of space, after the back-off pause: a compaction then
// fails before it reads and compresses its inputs, not after, which a full
// disk would otherwise make it do again and again (about 20% of a core was
// measured with compressible values). Recover clears the state.
func (f fullFS) refuse(name string, _ vfs.DiskWriteCategory) error {
	if !f.s.noSpace.Load() || !isTable(name) || f.s.headroom.Load() {
		return nil
	}
	f.s.backOff()
	if !f.s.noSpace.Load() {
		return nil // recovered meanwhile: try for real
	}
	return &os.PathError{Op: "create", Path: name, Err: syscall.ENOSPC}
}

// mustNotFail reports whether a failed write to the file is fatal to pebble
// or poisons it: the manifest and the write-ahead log.
func mustNotFail(name string) bool {
	base := name[strings.LastIndexAny(name, `/\`)+1:]
	return strings.HasPrefix(base, "MANIFEST") || strings.HasSuffix(base, ".log")
}

func isTable(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

func (f fullFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		f.s.sawError(name, err)
		return nil, err
	}
	return fullFile{File: file, s: f.s, name: name}, nil
}

type fullFile struct {
	vfs.File
	s    *Store
	name string
}

func (f fullFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if err != nil && isNoSpace(err) && mustNotFail(f.name) && f.s.releaseReserve() {
		// The manifest or the log met a full disk first: the reserve's
		// space lets this write complete, so pebble never sees the error
		// (a failed manifest write is fatal to it, a failed log write
		// poisons its log writer). Writes are refused from now on.
		f.s.noSpace.Store(true)
		var m int
		m, err = f.File.Write(p[n:])
		n += m
	}
	if err != nil {
		f.s.sawError(f.name, err)
	}
	return n, err
}

func (f fullFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	if err != nil {
		f.s.sawError(f.name, err)
	}
	return n, err
}

// sawError is told of every failed file write. On ENOSPC the store
// refuses writes from then on. A table being written (a flush or a
// compaction) is also held back by flushRetryPause, doubled while the disk
// stays full: pebble retries a failed flush at once, and without the pause
// a full disk costs a busy loop. The pause is taken without pebble's mutex
// and never on the write-ahead log, so commits, syncs and reads go on.
func (s *Store) sawError(name string, err error) {
	if !isNoSpace(err) {
		return
	}
	s.noSpace.Store(true)
	if strings.HasSuffix(name, ".log") {
		// Before the reserve is released: a log writer that met ENOSPC
		// keeps the error whatever room is made, and panics at the next
		// commit with pebble's commit mutex held (see walFull).
		s.walFull.Store(true)
	}
	if s.releaseReserve() {
		return // a table writer's retry finds room
	}
	if isTable(name) {
		s.headroom.Store(false)
		s.backOff()
	}
}

// makeReserve puts the reserve file in place, unless it is there. The
// file's blocks are allocated (fallocate, keeping its size 0; zeros are
// written where the file system cannot) under a temporary name, then
// renamed: a reserve file present is a whole one.
func (s *Store) makeReserve() error {
	if s.reserve <= 0 || s.reserved.Load() {
		return nil
	}
	path, tmp := s.raw.PathJoin(s.dir, reserveFile), s.raw.PathJoin(s.dir, reserveFile+".tmp")
	if _, err := s.raw.Stat(path); err == nil {
		s.reserved.Store(true)
		return nil
	}
	err := func() error {
		f, err := s.raw.Create(tmp, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		if err := f.Preallocate(0, s.reserve); err != nil {
			if isNoSpace(err) {
				_ = f.Close()
				return err
			}
			// No fallocate here: write the zeros.
			zeros := make([]byte, 1<<20)
			for left := s.reserve; left > 0; left -= int64(len(zeros)) {
				if _, err := f.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
					_ = f.Close()
					return err
				}
			}
		}
		if err := errors.Join(f.Sync(), f.Close()); err != nil {
			return err
		}
		return s.raw.Rename(tmp, path)
	}()
	if err != nil {
		_ = s.raw.Remove(tmp)
		return fmt.Errorf("reserve %s of %d MiB: %w", path, s.reserve>>20, err)
	}
	s.reserved.Store(true)
	return nil
}

// releaseReserve deletes the reserve file, if it is in place, and reports
// whether it did: its space is then the headroom of the work in flight.
func (s *Store) releaseReserve() bool {
	if !s.reserved.CompareAndSwap(true, false) {
		return false
	}
	s.headroom.Store(true)
	path := s.raw.PathJoin(s.dir, reserveFile)
	if err := s.raw.Remove(path); err != nil {
		s.log.Error("disk full: cannot delete the reserve file", "path", path, "err", err)
		return false
	}
	s.log.Warn("disk full: reserve file deleted so that the writes in flight complete; new writes are refused until space is freed", "path", path, "size_mib", s.reserve>>20)
	return true
}

// backOff holds a table writer for flushRetryPause, doubled at each ENOSPC
// up to eight times that, while the disk stays full.
func (s *Store) backOff() {
	k := min(s.fullStreak.Add(1)-1, 3)
	time.Sleep(flushRetryPause << k)
}

// backgroundError receives pebble's background errors (a failed flush or
// compaction), with pebble's mutex held: it only records and logs.
func (s *Store) backgroundError(err error) {
	if isNoSpace(err) {
		s.noSpace.Store(true)
		s.logFailure(fmt.Errorf("%w: %w", store.ErrNoSpace, err))
		return
	}
	if ok, n := s.logThrottle.allow(time.Now()); ok {
		s.log.Error("storage background error", "dir", s.dir, "err", err, "suppressed", n)
	}
}

func (s *Store) logFailure(err error) {
	if ok, n := s.logThrottle.allow(time.Now()); ok {
		level := slog.LevelError
		msg := "storage failed: writes refused until the process restarts"
		if isNoSpace(err) {
			level, msg = slog.LevelWarn, "disk full: writes refused until space is freed"
		}
		s.log.Log(context.Background(), level, msg, "dir", s.dir, "err", err, "suppressed", n)
	}
}

// Health returns nil when the store takes writes, an error wrapping
// store.ErrNoSpace when its volume is full, or one wrapping store.ErrFailed
// when only reopening the store can make it take writes again.
func (s *Store) Health() error {
	if f := s.fail.Load(); f != nil {
		return fmt.Errorf("pebblestore: %s: %w", s.dir, f.err)
	}
	if s.noSpace.Load() {
		return fmt.Errorf("pebblestore: %s: %w", s.dir, store.ErrNoSpace)
	}
	return nil
}

// DiskUsage returns the free space available to this process and the size
// of the volume that holds the data directory (statfs).
func (s *Store) DiskUsage() (avail, total uint64, err error) {
	u, err := s.fsys.GetDiskUsage(s.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("pebblestore: disk usage of %s: %w", s.dir, err)
	}
	return u.AvailBytes, u.TotalBytes, nil
}

// Recover makes a store that ran out of space take writes again; the
// caller calls it once space has been freed. A store whose commit failed on
// ENOSPC is closed and reopened, which replays what reached the log (every
// write before the last successful Sync, at least) and rebuilds the digest;
// one whose flush failed only has its state cleared (pebble retries the
// flush by itself, and a new failure sets it again). Recover returns an
// error wrapping store.ErrFailed, and does nothing, for a store that failed
// for another reason: only a restart may recover that one.
func (s *Store) Recover() error {
	if s.walFull.Load() {
		// The log writer is poisoned even if no commit has met it yet:
		// only a reopen clears it.
		s.fail.CompareAndSwap(nil, &failure{err: fmt.Errorf("%w: the write-ahead log of %s met a full disk", store.ErrNoSpace, s.dir)})
	}
	f := s.fail.Load()
	if f != nil && (f.background || !errors.Is(f.err, store.ErrNoSpace)) {
		return fmt.Errorf("pebblestore: recover %s: %w", s.dir, f.err)
	}
	if err := s.makeReserve(); err != nil {
		return fmt.Errorf("pebblestore: recover %s: %w: %w", s.dir, store.ErrNoSpace, err)
	}
	s.headroom.Store(false)
	if f == nil {
		s.noSpace.Store(false)
		s.fullStreak.Store(0)
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// Opening flushes what the log replays: tables must be creatable.
	s.noSpace.Store(false)
	s.fullStreak.Store(0)
	s.walFull.Store(false)
	if err := s.reopen(); err != nil {
		return err
	}
	// Records visible before the failure may not have reached the log: the
	// digest must describe what the reopened database holds.
	s.digest.Reset()
	if err := s.loadDigest(); err != nil {
		return fmt.Errorf("pebblestore: recover %s: %w", s.dir, err)
	}
	// So may changes: the revision goes back to the last durable one.
	if err := s.loadLog(); err != nil {
		return fmt.Errorf("pebblestore: recover %s: %w", s.dir, err)
	}
	s.noSpace.Store(false)
	s.fullStreak.Store(0)
	s.fail.Store(nil)
	s.dirty.Store(false)
	s.log.Info("storage recovered: database reopened after running out of space", "dir", s.dir)
	return nil
}

// reopen closes the database and opens it again; the caller holds wmu.
func (s *Store) reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if s.db != nil {
		// The log writer keeps its error: Close reports it, and that is
		// expected here.
		s.dropSyncs()
		if err := s.closeDB(); err != nil {
			s.log.Debug("closing the database that ran out of space", "dir", s.dir, "err", err)
		}
		s.db = nil
	}
	db, err := pebble.Open(s.dir, s.pebbleOptions(false))
	if err != nil {
		return fmt.Errorf("pebblestore: recover %s: reopen: %w", s.dir, err)
	}
	s.db = db
	return nil
}

// closeDB closes s.db, turning a Fatalf or panic on the way into an error.
func (s *Store) closeDB() (err error) {
	defer func() {
		if r := recover(); r != nil {
			fp, ok := r.(fatalPanic)
			if !ok {
				panic(r)
			}
			err = fp.err
		}
	}()
	return s.db.Close()
}

// throttle lets one event through per logInterval and counts the others.
type throttle struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (t *throttle) allow(now time.Time) (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < logInterval {
		t.suppressed++
		return false, 0
	}
	n := t.suppressed
	t.last, t.suppressed = now, 0
	return true, n
}
