// Package pebblestore is a durable store.Store kept in a pebble database.
//
// # Layout
//
// Records live under pebble keys 'r'+key and metadata under 'm'+key, the
// change log under 'c'+revision (see changelog.go). A
// record's pebble value is an 18-byte header (format byte, version HLC and
// node as big-endian uint64s, flags byte with the tombstone bit) followed by
// the value. The data directory holds, beside pebble's files, a marker file
// named HEARSAY that identifies it and records the format version.
//
// # Durability
//
// Apply and Remove commit one pebble batch each and ask pebble for the sync
// of the write-ahead log that covers it without waiting for that sync
// (pebble's ApplyNoSyncWait): their writes are visible at once, the fsync
// starts at once on pebble's log writer, and the caller goes on (the event
// loop applies its next batch) while it runs. Sync waits for the syncs of
// every batch committed before it. Pebble's log writer gives group commit:
// the syncs asked for while an fsync runs share the next one. SetMeta
// commits nothing itself: its writes wait in memory (visible to GetMeta)
// and go into the next batch Apply, Remove or Sync commits, so that the
// metadata a batch of writes carries (the clock's high-water mark) costs no
// commit of its own.
package pebblestore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/digest"
)

// Errors returned by Open and by reads, for use with errors.Is. They are
// always wrapped with the directory or key concerned.
var (
	// ErrForeignDir means the data directory holds files but no hearsay
	// marker: it belongs to something else, and Open leaves it untouched.
	ErrForeignDir = errors.New("not a hearsay data directory")
	// ErrFormat means the data directory's marker names a format version
	// this build cannot read, or is not a marker at all.
	ErrFormat = errors.New("unsupported data directory format")
	// ErrCorrupt means stored bytes are not a valid encoding, or pebble
	// found its own files corrupt.
	ErrCorrupt = errors.New("corrupt data")
)

// DefaultCacheSize is the block cache size used when Options.CacheSize is 0.
const DefaultCacheSize = 64 << 20

// scanChunk bounds how many entries a scan reads under the lock before
// releasing it to call the callback, and scanChunkBytes bounds their bytes.
const (
	scanChunk      = 256
	scanChunkBytes = 1 << 20
)

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger receives pebble's log messages; nil means slog.Default().
	Logger *slog.Logger
	// NoSync makes Sync a no-op, trading durability on power loss or OS
	// crash for speed (tests, benchmarks, throwaway nodes). Writes still
	// reach the log file, so they survive the process being killed once
	// pebble has flushed them.
	NoSync bool
	// CacheSize is the block cache size in bytes; 0 means DefaultCacheSize.
	CacheSize int64
	// DigestCells is the number of cells of the anti-entropy digest, kept
	// in memory (40 bytes each) and rebuilt by one scan at open; 0 means
	// DefaultDigestCells.
	DigestCells int
	// ReserveBytes is the size of the reserve file kept in the data
	// directory and deleted when the disk fills, so that the flushes the
	// writes already in flight wait for can complete (see failure.go); 0
	// means DefaultReserve, negative none.
	ReserveBytes int64
	// ChangeLog bounds the change log kept on disk (zero: the defaults,
	// store.DefaultChangeLogEntries and store.DefaultChangeLogBytes). A
	// lower limit than a directory was written with trims it at open.
	ChangeLog store.ChangeLogLimits
}

// DefaultDigestCells is the digest size when Options.DigestCells is 0:
// 2.6 MB of memory, enough to decode differences of about 45,000 records.
const DefaultDigestCells = 1 << 16

// Store is a store.Store on a pebble database. It is safe for concurrent
// use; Apply and Remove are serialised among themselves, since each reads the
// current record before deciding whether to write.
type Store struct {
	dir    string
	noSync bool
	opts   Options
	// fsys is the file system pebble runs on, wrapped to report ENOSPC.
	fsys vfs.FS
	log  *slog.Logger

	// noSpace is set when a write, flush or compaction met ENOSPC; fail
	// when a commit failed and pebble can take no more writes (see
	// failure.go). Both make writes fail at once.
	noSpace    atomic.Bool
	fullStreak atomic.Int64 // ENOSPCs met since the disk last had room
	// raw is the file system under fsys; reserve the size of the reserve
	// file, reserved whether it is in place, headroom whether its space
	// was released for the work in flight and not used up yet
	// (failure.go).
	raw      vfs.FS
	reserve  int64
	reserved atomic.Bool
	headroom atomic.Bool
	// walFull is set when a write to the write-ahead log met ENOSPC:
	// pebble's log writer keeps that error and panics in its commit
	// pipeline, with the pipeline's mutex held, at the next commit, which
	// would leave the database impossible to close (and so to recover).
	walFull     atomic.Bool
	fail        atomic.Pointer[failure]
	logThrottle throttle
	// dirty is set by a commit made without a sync (Options.NoSync) and
	// cleared by Sync.
	dirty atomic.Bool
	// syncs are the batches committed with a sync asked for and not waited
	// for yet, in commit order; Sync waits for them and closes them. A
	// Sync with none (and no metadata pending) costs no fsync.
	syncMu sync.Mutex
	syncs  []*pebble.Batch
	// syncRun serialises Sync, so that a Sync never returns while an
	// earlier one still waits for a batch committed before it.
	syncRun sync.Mutex
	// meta holds the metadata writes SetMeta has taken and no commit has
	// written yet (nil: a deletion), under metaMu, which a commit holds
	// from taking them until they are in the database.
	metaMu sync.Mutex
	meta   map[string][]byte

	// wmu serialises the read-modify-write of Apply and Remove, and guards
	// ws, Apply's scratch space.
	wmu sync.Mutex
	ws  applyScratch
	// mu guards closed and db's lifetime: every operation holds it for
	// reading, Close and Recover for writing. db is nil only if Recover
	// could not reopen the database.
	mu     sync.RWMutex
	closed bool
	db     *pebble.DB
	// digest is updated under wmu, after each write commits.
	digest *digest.Digest
	// clog is the change log's extent, written under wmu and logMu, read
	// under logMu.
	logMu sync.RWMutex
	clog  changeLog
}

var _ store.Store = (*Store)(nil)

// Open opens the hearsay data directory dir, creating it if it does not
// exist or is empty. A directory that holds files but no marker yields an
// error wrapping ErrForeignDir; a marker of another format version, one
// wrapping ErrFormat; a database pebble cannot open, an error naming dir
// (wrapping ErrCorrupt as well when pebble reports corruption).
func Open(dir string, opts Options) (*Store, error) {
	return open(dir, opts, vfs.Default)
}

// open is Open on the file system fsys, which tests replace with an
// in-memory one that can simulate a crash.
func open(dir string, opts Options, fsys vfs.FS) (*Store, error) {
	create, err := prepareDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open %s: %w", dir, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Store{dir: dir, noSync: opts.NoSync, opts: opts, log: logger.With("component", "pebblestore")}
	s.fsys, s.raw = fullFS{FS: fsys, s: s}, fsys
	s.reserve = opts.ReserveBytes
	if s.reserve == 0 {
		s.reserve = DefaultReserve
	}
	db, err := pebble.Open(dir, s.pebbleOptions(create))
	switch {
	case err == nil:
	case errors.Is(err, pebble.ErrDBDoesNotExist):
		return nil, fmt.Errorf("pebblestore: open %s: it has a %s marker and other files but no database (deleted, or creation interrupted): %w", dir, MarkerFile, err)
	case pebble.IsCorruptionError(err):
		return nil, fmt.Errorf("pebblestore: open %s: %w: %w", dir, ErrCorrupt, err)
	default:
		return nil, fmt.Errorf("pebblestore: open %s: %w", dir, err)
	}
	cells := opts.DigestCells
	if cells <= 0 {
		cells = DefaultDigestCells
	}
	s.db, s.digest = db, digest.New(cells)
	if err := s.loadDigest(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("pebblestore: open %s: %w", dir, err)
	}
	if err := s.loadLog(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("pebblestore: open %s: %w", dir, err)
	}
	if err := s.makeReserve(); err != nil {
		// A full disk: the store opens without its reserve, which Recover
		// puts back once there is room.
		s.log.Warn("no room for the disk-full reserve", "dir", dir, "size", s.reserve, "err", err)
	}
	return s, nil
}

// pebbleOptions returns the options pebble is opened with; create is true
// when the database does not exist yet.
func (s *Store) pebbleOptions(create bool) *pebble.Options {
	l := s.opts.Logger
	if l == nil {
		l = slog.Default()
	}
	o := &pebble.Options{
		FS:               s.fsys,
		CacheSize:        s.opts.CacheSize,
		Logger:           slogLogger{l: l.With("component", "pebble", "dir", s.dir), fatal: s.fatal},
		ErrorIfNotExists: !create,
		EventListener: &pebble.EventListener{
			BackgroundError: s.backgroundError,
		},
	}
	Tune(o)
	return o
}

// Tune sets in o what the store changes in pebble's defaults: the block
// cache (DefaultCacheSize when o has none), the newest format, and a Bloom
// filter (10 bits per key) in the tables of every level, so that the read
// Apply makes of each record it writes costs no block read for a key the
// store does not hold (a new key: most local writes). Benchmarks use it to
// open a bare pebble database as the store does.
func Tune(o *pebble.Options) {
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	o.FormatMajorVersion = pebble.FormatNewest
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
}

// loadDigest rebuilds the digest with one scan of the records, and builds
// the key-hash and tombstone indexes on the way if the directory predates
// them.
func (s *Store) loadDigest() error {
	hashIndexed, err := s.hasInternal(keyHashIndexed)
	if err != nil {
		return err
	}
	tombIndexed, err := s.hasInternal(keyTombIndexed)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer func() { _ = b.Close() }()
	var indexErr error
	err = s.Scan(nil, nil, func(r store.Record) bool {
		s.digest.Add(r.Item())
		if !hashIndexed {
			indexErr = b.Set(hashKey(digest.KeyHash(r.Key), r.Key), nil, nil)
		}
		if indexErr == nil && !tombIndexed && r.Tombstone {
			indexErr = b.Set(dbKey(nsTomb, r.Key), encodeVersion(r.Version), nil)
		}
		if indexErr == nil && b.Len() > 4<<20 {
			indexErr = s.guard(false, func() error { return s.db.Apply(b, pebble.NoSync) })
			b.Reset()
		}
		return indexErr == nil
	})
	if err = errors.Join(err, indexErr); err != nil {
		return fmt.Errorf("rebuild digest: %w", err)
	}
	if hashIndexed && tombIndexed {
		return nil
	}
	for _, k := range []string{keyHashIndexed, keyTombIndexed} {
		if err := b.Set(dbKey(nsInternal, []byte(k)), []byte{1}, nil); err != nil {
			return fmt.Errorf("build indexes: %w", err)
		}
	}
	if err := s.guard(false, func() error { return s.db.Apply(b, pebble.Sync) }); err != nil {
		return fmt.Errorf("build indexes: %w", err)
	}
	return nil
}

// hasInternal reports whether the internal bookkeeping key k is present.
func (s *Store) hasInternal(k string) (bool, error) {
	_, closer, err := s.db.Get(dbKey(nsInternal, []byte(k)))
	switch {
	case err == nil:
		_ = closer.Close()
		return true, nil
	case errors.Is(err, pebble.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read index marker %s: %w", k, err)
}

// Digest returns the anti-entropy digest of the records, kept up to date by
// Apply and Remove and rebuilt at open.
func (s *Store) Digest() *digest.Digest { return s.digest }

// GetByHash returns the records whose key hashes to h, in key order, found
// through the key-hash index.
func (s *Store) GetByHash(h uint64) ([]store.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return nil, err
	}
	prefix := hashKey(h, nil)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: get by hash %x: %w", h, err)
	}
	var keys [][]byte
	for valid := it.First(); valid; valid = it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()[len(prefix):]...))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("pebblestore: get by hash %x: %w", h, err)
	}
	var out []store.Record
	for _, k := range keys {
		r, ok, err := s.get(k)
		if err != nil {
			return nil, fmt.Errorf("pebblestore: get by hash %x: %w", h, err)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Dir returns the data directory the store was opened on.
func (s *Store) Dir() string { return s.dir }

// Get returns the record stored for key, tombstones included. A record whose
// stored bytes do not decode yields an error wrapping ErrCorrupt.
func (s *Store) Get(key []byte) (store.Record, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return store.Record{}, false, err
	}
	r, ok, err := s.get(key)
	if err != nil {
		return store.Record{}, false, fmt.Errorf("pebblestore: get: %w", err)
	}
	return r, ok, nil
}

// get reads key's record; the caller holds mu for reading.
func (s *Store) get(key []byte) (store.Record, bool, error) {
	return s.getAt(dbKey(nsRecord, key), key)
}

// getAt reads the record of key, whose pebble key is dk; the caller holds
// mu for reading.
func (s *Store) getAt(dk, key []byte) (store.Record, bool, error) {
	v, closer, err := s.db.Get(dk)
	if errors.Is(err, pebble.ErrNotFound) {
		return store.Record{}, false, nil
	}
	if err != nil {
		return store.Record{}, false, fmt.Errorf("record %q: %w", key, err)
	}
	r, err := decodeRecord(key, v)
	_ = closer.Close()
	if err != nil {
		return store.Record{}, false, err
	}
	return r, true, nil
}

// Apply merges each record last-writer-wins and reports which changed the
// store. The winners, their change log entries, the revision counter and the
// metadata SetMeta left pending are written in one pebble batch, visible at
// once and durable after the next Sync (whose fsync has begun when Apply
// returns). Records later in recs are merged against the
// result of earlier ones, so a key may appear more than once. A key longer
// than store.MaxKeySize fails the whole call before anything is written.
func (s *Store) Apply(recs []store.Record) ([]bool, error) {
	for i, r := range recs {
		if len(r.Key) > store.MaxKeySize {
			return nil, fmt.Errorf("pebblestore: apply: record %d: key of %d bytes exceeds the limit of %d", i, len(r.Key), store.MaxKeySize)
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return nil, err
	}

	changed := make([]bool, len(recs))
	// pending holds the records this call has already decided to write,
	// which the database does not show yet.
	ws := &s.ws
	defer ws.reset()
	var pending map[string]store.Record
	if len(recs) > 1 {
		if ws.pending == nil {
			ws.pending = make(map[string]store.Record, len(recs))
		}
		pending = ws.pending
	}
	b := s.db.NewBatch()
	owned := true // until commit takes b
	defer func() {
		if owned {
			_ = b.Close()
		}
	}()
	// items are the digest changes, made once the batch has committed.
	items := ws.items[:0]
	// winners are the indexes of the records that change the store, sizes
	// their change log sizes.
	winners, sizes := ws.winners[:0], ws.sizes[:0]
	for i, r := range recs {
		cur, ok := pending[string(r.Key)]
		if !ok {
			ws.key = append(append(ws.key[:0], nsRecord), r.Key...)
			var err error
			if cur, ok, err = s.getAt(ws.key, r.Key); err != nil {
				return nil, fmt.Errorf("pebblestore: apply: %w", err)
			}
		}
		if ok && !r.Wins(cur) {
			continue
		}
		var old digest.Item
		if ok {
			old = cur.Item()
		} else {
			op := b.SetDeferred(9+len(r.Key), 0)
			op.Key[0] = nsHash
			binary.BigEndian.PutUint64(op.Key[1:], digest.KeyHash(r.Key))
			copy(op.Key[9:], r.Key)
			if err := op.Finish(); err != nil {
				return nil, fmt.Errorf("pebblestore: apply: index %q: %w", r.Key, err)
			}
		}
		items = append(items, [2]digest.Item{old, r.Item()})
		switch {
		case r.Tombstone:
			if err := b.Set(dbKey(nsTomb, r.Key), encodeVersion(r.Version), nil); err != nil {
				return nil, fmt.Errorf("pebblestore: apply: index tombstone %q: %w", r.Key, err)
			}
		case ok && cur.Tombstone:
			if err := b.Delete(dbKey(nsTomb, r.Key), nil); err != nil {
				return nil, fmt.Errorf("pebblestore: apply: unindex tombstone %q: %w", r.Key, err)
			}
		}
		op := b.SetDeferred(1+len(r.Key), encodedLen(r))
		op.Key[0] = nsRecord
		copy(op.Key[1:], r.Key)
		encodeRecord(op.Value, r)
		if err := op.Finish(); err != nil {
			return nil, fmt.Errorf("pebblestore: apply: %w", err)
		}
		if pending != nil {
			pending[string(r.Key)] = r
		}
		changed[i] = true
		winners = append(winners, i)
		sizes = append(sizes, store.ChangeSize(r))
	}
	if len(winners) == 0 {
		return changed, nil
	}
	// The changes' revisions, log entries and the counter go in the same
	// batch; entries the limits would trim at once are not written.
	rev := s.clog.rev
	drop := s.clog.excess(sizes)
	if old := min(drop, s.clog.entries()); old > 0 {
		if err := b.DeleteRange(changeKey(s.clog.first()), changeKey(s.clog.first()+uint64(old)), nil); err != nil {
			return nil, fmt.Errorf("pebblestore: apply: trim change log: %w", err)
		}
	}
	for j, i := range winners {
		if j >= drop-s.clog.entries() {
			r := recs[i]
			op := b.SetDeferred(9, changeLen(r))
			op.Key[0] = nsChange
			binary.BigEndian.PutUint64(op.Key[1:], rev+uint64(j)+1)
			putChange(op.Value, r)
			if err := op.Finish(); err != nil {
				return nil, fmt.Errorf("pebblestore: apply: change log: %w", err)
			}
		}
	}
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], rev+uint64(len(winners)))
	if err := b.Set(dbKey(nsInternal, []byte(keyRevision)), counter[:], nil); err != nil {
		return nil, fmt.Errorf("pebblestore: apply: revision: %w", err)
	}
	owned = false
	if err := s.commit(b, false); err != nil {
		return nil, fmt.Errorf("pebblestore: apply: %w", err)
	}
	for _, c := range items {
		s.digest.Replace(c[0], c[1])
	}
	s.logMu.Lock()
	for j, i := range winners {
		recs[i].Revision = rev + uint64(j) + 1
		s.clog.push(sizes[j])
	}
	s.clog.rev = rev + uint64(len(winners))
	s.clog.drop(drop)
	s.logMu.Unlock()
	ws.items, ws.winners, ws.sizes = items, winners, sizes
	return changed, nil
}

// applyScratch is the memory Apply reuses from call to call (under wmu),
// so that a batch of writes costs few allocations of its own.
type applyScratch struct {
	pending map[string]store.Record
	items   [][2]digest.Item
	winners []int
	sizes   []int64
	key     []byte // the pebble key of the record being read
}

// reset empties the scratch space for the next Apply, dropping what
// refers to the caller's records, and lets go of what one large batch grew.
func (ws *applyScratch) reset() {
	const keep = 4096
	if len(ws.pending) > keep {
		ws.pending = nil
	}
	clear(ws.pending)
	if cap(ws.items) > keep {
		ws.items, ws.winners, ws.sizes = nil, nil, nil
	}
	if cap(ws.key) > store.MaxKeySize+1 {
		ws.key = nil
	}
}

// Scan calls fn for every record whose key has prefix and is at or after
// start, in key order, tombstones included, until fn returns false.
//
// Records are read in chunks and fn runs with no lock held, so it may call
// any method of the store; Close makes the scan end with store.ErrClosed.
// The scan is not a snapshot: records written while it runs may or may not
// be seen, but every record present throughout is visited exactly once. A
// record that does not decode ends the scan with an error wrapping
// ErrCorrupt.
func (s *Store) Scan(prefix, start []byte, fn func(store.Record) bool) error {
	lower, upper := bounds(nsRecord, prefix, start)
	var batch []store.Record
	for {
		batch = batch[:0]
		more, err := s.scanChunk(lower, upper, func(k, v []byte) error {
			r, err := decodeRecord(k[1:], v)
			if err != nil {
				return err
			}
			batch = append(batch, r)
			return nil
		})
		if err != nil {
			return fmt.Errorf("pebblestore: scan: %w", err)
		}
		for _, r := range batch {
			if !fn(r) {
				return nil
			}
		}
		if !more {
			return nil
		}
		lower = append(dbKey(nsRecord, batch[len(batch)-1].Key), 0)
	}
}

// ScanTombstones calls fn for every tombstone whose key is at or after
// start, in key order, until fn returns false. It reads the tombstone
// index, not the records: its cost follows the number of tombstones, not
// the size of the store. Like Scan, it calls fn with no lock held.
func (s *Store) ScanTombstones(start []byte, fn func(store.Record) bool) error {
	lower, upper := bounds(nsTomb, nil, start)
	var batch []store.Record
	for {
		batch = batch[:0]
		more, err := s.scanChunk(lower, upper, func(k, v []byte) error {
			ver, err := decodeVersion(v)
			if err != nil {
				return fmt.Errorf("key %q: %w", k[1:], err)
			}
			batch = append(batch, store.Record{Key: append([]byte(nil), k[1:]...), Version: ver, Tombstone: true})
			return nil
		})
		if err != nil {
			return fmt.Errorf("pebblestore: scan tombstones: %w", err)
		}
		for _, r := range batch {
			if !fn(r) {
				return nil
			}
		}
		if !more {
			return nil
		}
		lower = append(dbKey(nsTomb, batch[len(batch)-1].Key), 0)
	}
}

// scanChunk visits the keys in [lower, upper) in order, passing each key and
// value (valid only during the call) to add, until it has visited scanChunk
// entries or scanChunkBytes bytes. It reports whether it stopped early, so
// that entries may remain.
func (s *Store) scanChunk(lower, upper []byte, add func(k, v []byte) error) (more bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return false, err
	}
	if string(lower) >= string(upper) {
		return false, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			more, err = false, cerr
		}
	}()
	n, size := 0, 0
	for valid := it.First(); valid; valid = it.Next() {
		if n >= scanChunk || size >= scanChunkBytes {
			return true, nil
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return false, err
		}
		if err := add(it.Key(), v); err != nil {
			return false, err
		}
		n++
		size += len(it.Key()) + len(v)
	}
	return false, it.Error()
}

// Remove deletes key's record if it still holds version v, and does nothing
// otherwise. The deletion is durable after the next Sync.
func (s *Store) Remove(key []byte, v store.Version) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return err
	}
	cur, ok, err := s.get(key)
	if err != nil {
		return fmt.Errorf("pebblestore: remove: %w", err)
	}
	if !ok || cur.Version != v {
		return nil
	}
	b := s.db.NewBatch()
	err = b.Delete(dbKey(nsRecord, key), nil)
	if err == nil {
		err = b.Delete(hashKey(digest.KeyHash(key), key), nil)
	}
	if err == nil && cur.Tombstone {
		err = b.Delete(dbKey(nsTomb, key), nil)
	}
	if err == nil {
		err = s.commit(b, false)
	} else {
		_ = b.Close()
	}
	if err != nil {
		return fmt.Errorf("pebblestore: remove %q: %w", key, err)
	}
	s.digest.Remove(cur.Item())
	return nil
}

// GetMeta returns the metadata value stored under key.
func (s *Store) GetMeta(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	s.metaMu.Lock()
	v, pending := s.meta[string(key)]
	s.metaMu.Unlock()
	if pending {
		// A pending write was copied when SetMeta took it and is never
		// changed: copy it again, since the caller may.
		return bytes.Clone(v), v != nil, nil
	}
	v, closer, err := s.db.Get(dbKey(nsMeta, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pebblestore: get meta %q: %w", key, err)
	}
	out := append(make([]byte, 0, len(v)), v...)
	_ = closer.Close()
	return out, true, nil
}

// SetMeta stores value under key, or deletes key when value is nil. The
// change is visible to GetMeta at once, goes to the database with the next
// batch Apply, Remove or Sync commits, and is durable after the next Sync.
// A store that refuses writes (full disk, failed) refuses it.
func (s *Store) SetMeta(key, value []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.guard(false, func() error { return nil }); err != nil {
		return fmt.Errorf("pebblestore: set meta %q: %w", key, err)
	}
	if value != nil {
		value = append(make([]byte, 0, len(value)), value...)
	}
	s.metaMu.Lock()
	if s.meta == nil {
		s.meta = make(map[string][]byte)
	}
	s.meta[string(key)] = value
	s.metaMu.Unlock()
	return nil
}

// commit writes b, with the metadata SetMeta left pending, and takes b
// from the caller: with Options.NoSync it commits without a sync and closes
// b; otherwise it asks pebble for the sync of the write-ahead log through b
// and returns once b is applied, without waiting for the fsync, and hands b
// to Sync, which waits for it. An empty b with nothing pending commits
// nothing. allowNoSpace is guard's. The caller holds mu for reading.
func (s *Store) commit(b *pebble.Batch, allowNoSpace bool) error {
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	for k, v := range s.meta {
		var err error
		if v == nil {
			err = b.Delete(dbKey(nsMeta, []byte(k)), nil)
		} else {
			err = b.Set(dbKey(nsMeta, []byte(k)), v, nil)
		}
		if err != nil {
			_ = b.Close()
			return fmt.Errorf("metadata %q: %w", k, err)
		}
	}
	if b.Empty() {
		_ = b.Close()
		return nil
	}
	if s.noSync {
		err := s.guard(allowNoSpace, func() error { return s.db.Apply(b, pebble.NoSync) })
		_ = b.Close()
		if err != nil {
			return err
		}
		clear(s.meta)
		s.dirty.Store(true)
		return nil
	}
	// On an error b may still sit in pebble's commit queue: it is left
	// to the garbage collector, not closed.
	if err := s.guard(allowNoSpace, func() error { return s.db.ApplyNoSyncWait(b, pebble.Sync) }); err != nil {
		return err
	}
	clear(s.meta)
	s.syncMu.Lock()
	s.syncs = append(s.syncs, b)
	s.syncMu.Unlock()
	return nil
}

// unsynced reports whether a Sync now would have anything to make durable.
func (s *Store) unsynced() bool {
	s.metaMu.Lock()
	meta := len(s.meta)
	s.metaMu.Unlock()
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return meta > 0 || len(s.syncs) > 0 || s.dirty.Load()
}

// ScanMeta calls fn for every metadata entry whose key has prefix, in key
// order, until fn returns false. Like Scan, it calls fn with no lock held.
func (s *Store) ScanMeta(prefix []byte, fn func(key, value []byte) bool) error {
	// The pending writes go to the database first, so that the scan sees
	// them; they are made durable by the next Sync as before.
	if err := s.commitMeta(); err != nil {
		return fmt.Errorf("pebblestore: scan meta: %w", err)
	}
	lower, upper := bounds(nsMeta, prefix, nil)
	type kv struct{ k, v []byte }
	var batch []kv
	for {
		batch = batch[:0]
		more, err := s.scanChunk(lower, upper, func(k, v []byte) error {
			batch = append(batch, kv{
				k: append([]byte(nil), k[1:]...),
				v: append(make([]byte, 0, len(v)), v...),
			})
			return nil
		})
		if err != nil {
			return fmt.Errorf("pebblestore: scan meta: %w", err)
		}
		for _, e := range batch {
			if !fn(e.k, e.v) {
				return nil
			}
		}
		if !more {
			return nil
		}
		lower = append(dbKey(nsMeta, batch[len(batch)-1].k), 0)
	}
}

// commitMeta commits the metadata SetMeta left pending, if any.
func (s *Store) commitMeta() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return err
	}
	return s.commit(s.db.NewBatch(), false)
}

// Sync makes every Apply, Remove and SetMeta before it durable: it commits
// the metadata still pending, then waits for the write-ahead log's sync of
// every batch committed since the last Sync (their fsyncs began when they
// were committed, and pebble's log writer lets later ones share an fsync).
// A Sync with nothing to wait for costs no fsync. With Options.NoSync it
// only commits the pending metadata.
func (s *Store) Sync() error {
	s.syncRun.Lock()
	defer s.syncRun.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(); err != nil {
		return err
	}
	if f := s.fail.Load(); f != nil {
		// What the failed commit left in the log is of unknown durability:
		// no later Sync may vouch for it.
		return fmt.Errorf("pebblestore: sync: %w", f.err)
	}
	if err := s.commit(s.db.NewBatch(), true); err != nil {
		return fmt.Errorf("pebblestore: sync: %w", err)
	}
	s.dirty.Store(false)
	s.syncMu.Lock()
	waits := s.syncs
	s.syncs = nil
	s.syncMu.Unlock()
	var failed error
	for _, b := range waits {
		// Each batch is waited for, even after a failure, so that none is
		// left in flight; a batch whose sync failed is not reused.
		if err := b.SyncWait(); err != nil {
			failed = cmp.Or(failed, err)
			continue
		}
		_ = b.Close()
	}
	if failed != nil {
		// Like a failed commit: the log holds writes of unknown durability.
		cause := classify(fmt.Errorf("sync of the write-ahead log: %w", failed))
		if isNoSpace(cause) {
			s.noSpace.Store(true)
		}
		s.fail.CompareAndSwap(nil, &failure{err: cause})
		s.logFailure(cause)
		return fmt.Errorf("pebblestore: sync: %w", cause)
	}
	return nil
}

// dropSyncs forgets the batches waiting for their sync without waiting:
// the database is being closed or reopened after a failure, and no Sync
// may vouch for them. The caller holds mu for writing.
func (s *Store) dropSyncs() {
	s.syncMu.Lock()
	s.syncs = nil
	s.syncMu.Unlock()
}

// usable returns why the database cannot be used, if it cannot; the caller
// holds mu.
func (s *Store) usable() error {
	switch {
	case s.closed:
		return store.ErrClosed
	case s.db == nil:
		return fmt.Errorf("pebblestore: %s: %w: the database could not be reopened after a failure", s.dir, store.ErrFailed)
	}
	return nil
}

// Close closes the database, which flushes and syncs the write-ahead log.
// Later calls to any method, Close included, return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	if s.db == nil {
		return nil
	}
	if f := s.fail.Load(); f != nil && f.background {
		// A pebble goroutine is parked holding pebble's locks: closing
		// would wait for it forever. The process's exit releases the rest.
		return fmt.Errorf("pebblestore: close %s: not closed, storage failed: %w", s.dir, f.err)
	}
	if s.fail.Load() == nil {
		// The pending metadata and the syncs in flight end before the
		// database does; a failure here shows in closeDB's error too.
		if err := s.commit(s.db.NewBatch(), true); err != nil {
			s.log.Warn("metadata not written at close", "dir", s.dir, "err", err)
		}
		s.syncMu.Lock()
		waits := s.syncs
		s.syncs = nil
		s.syncMu.Unlock()
		for _, b := range waits {
			if b.SyncWait() == nil {
				_ = b.Close()
			}
		}
	}
	s.dropSyncs()
	if err := s.closeDB(); err != nil {
		if f := s.fail.Load(); f != nil {
			// The log writer reports the failure again; what is durable
			// was synced before it.
			return fmt.Errorf("pebblestore: close %s after a storage failure: %w", s.dir, f.err)
		}
		return fmt.Errorf("pebblestore: close %s: %w", s.dir, err)
	}
	return nil
}
