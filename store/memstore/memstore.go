// Package memstore is an in-memory store.Store, for tests, simulations and
// nodes that need no durability.
//
// Records and metadata are kept in key order, so Scan and ScanMeta cost
// O(log n) to start plus the entries they visit. Every record or value going
// in or out is copied: callers may reuse their slices, and slices returned to
// them never alias the store's memory.
package memstore

import (
	"fmt"
	"slices"
	"sync"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/digest"
)

// scanChunk bounds how many entries Scan and ScanMeta copy out under the read
// lock before releasing it to call the callback, and scanChunkBytes bounds
// the bytes those entries hold.
const (
	scanChunk      = 256
	scanChunkBytes = 1 << 20
)

// DefaultDigestCells is the size of a memstore's anti-entropy digest when
// Options.DigestCells is 0: smaller than a durable store's, since
// simulations hold many memstores at once, and still enough to decode
// differences of about 10,000 records.
const DefaultDigestCells = 1 << 14

// Options configure NewWithOptions. The zero value is usable.
type Options struct {
	// DigestCells is the number of cells of the anti-entropy digest; 0
	// means DefaultDigestCells.
	DigestCells int
	// ChangeLog bounds the change log (zero: the defaults). The log shares
	// the memory of the records it names, but holds on to values that were
	// overwritten since.
	ChangeLog store.ChangeLogLimits
}

// Store is an in-memory store.Store. It is safe for concurrent use. The zero
// value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	closed  bool
	records *orderedMap[store.Record]
	meta    *orderedMap[[]byte]
	// byHash indexes record keys by digest.KeyHash.
	byHash map[uint64][]string
	// tombs holds the keys of the records that are tombstones.
	tombs  *orderedMap[struct{}]
	digest *digest.Digest

	// The change log: log[head:] are the changes from revision
	// rev-len(log)+head+1 through rev, logBytes their size.
	rev      uint64
	log      []store.Record
	head     int
	logBytes int64
	limits   store.ChangeLogLimits
}

var _ store.Store = (*Store)(nil)

// New returns an empty in-memory store with the default options.
func New() *Store { return NewWithOptions(Options{}) }

// NewWithOptions returns an empty in-memory store.
func NewWithOptions(o Options) *Store {
	if o.DigestCells <= 0 {
		o.DigestCells = DefaultDigestCells
	}
	return &Store{
		records: newOrderedMap[store.Record](),
		meta:    newOrderedMap[[]byte](),
		byHash:  map[uint64][]string{},
		tombs:   newOrderedMap[struct{}](),
		digest:  digest.New(o.DigestCells),
		limits:  o.ChangeLog.Resolve(),
	}
}

// Digest returns the anti-entropy digest of the records, kept up to date by
// Apply and Remove.
func (s *Store) Digest() *digest.Digest { return s.digest }

// GetByHash returns copies of the records whose key hashes to h, in key
// order.
func (s *Store) GetByHash(h uint64) ([]store.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var out []store.Record
	for _, k := range s.byHash[h] {
		if it := s.records.get(k); it != nil {
			out = append(out, it.val.Clone())
		}
	}
	return out, nil
}

// index adds key to the key-hash index.
func (s *Store) index(key string) {
	h := digest.KeyHash([]byte(key))
	ks := s.byHash[h]
	i, _ := slices.BinarySearch(ks, key)
	s.byHash[h] = slices.Insert(ks, i, key)
}

// unindex removes key from the key-hash index.
func (s *Store) unindex(key string) {
	h := digest.KeyHash([]byte(key))
	ks := s.byHash[h]
	if i, ok := slices.BinarySearch(ks, key); ok {
		ks = slices.Delete(ks, i, i+1)
	}
	if len(ks) == 0 {
		delete(s.byHash, h)
	} else {
		s.byHash[h] = ks
	}
}

// Len returns the number of records held, tombstones included, or 0 once the
// store is closed.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0
	}
	return s.records.len()
}

// Get returns a copy of the record stored for key, tombstones included.
func (s *Store) Get(key []byte) (store.Record, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Record{}, false, store.ErrClosed
	}
	it := s.records.get(string(key))
	if it == nil {
		return store.Record{}, false, nil
	}
	return it.val.Clone(), true, nil
}

// Apply merges each record last-writer-wins, storing a copy of those that
// win, and reports which changed the store. Records later in recs are merged
// against the result of earlier ones, so a key may appear more than once.
// A key longer than store.MaxKeySize fails the whole call before anything
// is written.
func (s *Store) Apply(recs []store.Record) ([]bool, error) {
	if err := checkKeys(recs); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	changed := make([]bool, len(recs))
	for i, r := range recs {
		it := s.records.get(string(r.Key))
		if it != nil && !r.Wins(it.val) {
			continue
		}
		r = r.Clone()
		r.Revision = 0 // a stored record carries none (see Record.Revision)
		var old digest.Item
		if it != nil {
			old = it.val.Item()
			// Share the key bytes already held rather than keeping a
			// second copy.
			r.Key = it.val.Key
			it.val = r
		} else {
			s.records.put(string(r.Key), r)
			s.index(string(r.Key))
		}
		if r.Tombstone {
			s.tombs.put(string(r.Key), struct{}{})
		} else {
			s.tombs.remove(string(r.Key))
		}
		s.digest.Replace(old, r.Item())
		changed[i] = true
		s.rev++
		r.Revision = s.rev
		recs[i].Revision = s.rev
		s.appendLog(r)
	}
	return changed, nil
}

// appendLog adds a change to the log and trims the log to its limits; the
// caller holds mu.
func (s *Store) appendLog(r store.Record) {
	s.log = append(s.log, r)
	s.logBytes += store.ChangeSize(r)
	if len(s.log)-s.head > s.limits.Entries || s.logBytes > s.limits.Bytes {
		entries, bytes := s.limits.TrimTo()
		for len(s.log) > s.head && (len(s.log)-s.head > entries || s.logBytes > bytes) {
			s.logBytes -= store.ChangeSize(s.log[s.head])
			s.log[s.head] = store.Record{}
			s.head++
		}
	}
	// Reclaim the trimmed front once it is most of the slice.
	if s.head > 1024 && s.head > len(s.log)/2 {
		s.log = append([]store.Record(nil), s.log[s.head:]...)
		s.head = 0
	}
}

// first returns the oldest revision the log holds, 0 when it holds none;
// the caller holds mu.
func (s *Store) first() uint64 {
	if len(s.log) == s.head {
		return 0
	}
	return s.rev - uint64(len(s.log)-s.head) + 1
}

// Revision returns the revision of the last change.
func (s *Store) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// ChangeLog describes the change log.
func (s *Store) ChangeLog() store.ChangeLogStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return store.ChangeLogStats{Revision: s.rev, First: s.first(), Entries: len(s.log) - s.head, Bytes: s.logBytes}
}

// Changes calls fn with a copy of each change after revision after, in
// revision order, in chunks copied under the read lock.
func (s *Store) Changes(after uint64, fn func(store.Record) bool) error {
	batch := make([]store.Record, 0, scanChunk)
	next := after + 1
	for {
		batch = batch[:0]
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return store.ErrClosed
		}
		if next > s.rev {
			s.mu.RUnlock()
			return nil
		}
		first := s.first()
		if first == 0 || next < first {
			rev := s.rev
			s.mu.RUnlock()
			return fmt.Errorf("memstore: changes after %d: %w (it holds %d through %d)", next-1, store.ErrCompacted, first, rev)
		}
		size := 0
		for i := s.head + int(next-first); i < len(s.log) && len(batch) < scanChunk && size < scanChunkBytes; i++ {
			batch = append(batch, s.log[i].Clone())
			size += s.log[i].Size()
		}
		s.mu.RUnlock()
		for _, r := range batch {
			if !fn(r) {
				return nil
			}
		}
		next += uint64(len(batch))
	}
}

// checkKeys refuses records whose keys exceed store.MaxKeySize.
func checkKeys(recs []store.Record) error {
	for i, r := range recs {
		if len(r.Key) > store.MaxKeySize {
			return fmt.Errorf("memstore: apply: record %d: key of %d bytes exceeds the limit of %d", i, len(r.Key), store.MaxKeySize)
		}
	}
	return nil
}

// Scan calls fn with a copy of every record whose key has prefix and is at or
// after start, in key order, tombstones included, until fn returns false.
//
// fn runs without the store's lock held, so it may call any method of the
// store except that Close makes the scan end with store.ErrClosed. The scan
// is not a snapshot: records written while it runs may or may not be seen,
// but every record present throughout the scan is visited exactly once.
func (s *Store) Scan(prefix, start []byte, fn func(store.Record) bool) error {
	return s.inChunks(start, func(from string, batch []store.Record) ([]store.Record, bool) {
		size := 0
		s.records.ascend(string(prefix), from, func(it *item[store.Record]) bool {
			batch = append(batch, it.val.Clone())
			size += it.val.Size()
			return len(batch) < scanChunk && size < scanChunkBytes
		})
		return batch, len(batch) == scanChunk || size >= scanChunkBytes
	}, fn)
}

// inChunks runs a scan a chunk at a time: collect appends to batch, under
// the read lock, the records from key from on, and says whether it stopped
// for the chunk's bound; fn then sees them with no lock held. The next
// chunk starts after the last key seen.
func (s *Store) inChunks(start []byte, collect func(from string, batch []store.Record) ([]store.Record, bool), fn func(store.Record) bool) error {
	batch := make([]store.Record, 0, scanChunk)
	from := string(start)
	for {
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return store.ErrClosed
		}
		var more bool
		batch, more = collect(from, batch[:0])
		s.mu.RUnlock()
		for _, r := range batch {
			if !fn(r) {
				return nil
			}
		}
		if len(batch) == 0 || !more {
			return nil
		}
		// The smallest key after the last one visited.
		from = string(batch[len(batch)-1].Key) + "\x00"
	}
}

// ScanTombstones calls fn with a copy of every tombstone whose key is at or
// after start, in key order, until fn returns false. Like Scan, it calls fn
// with no lock held; it walks the tombstones only.
func (s *Store) ScanTombstones(start []byte, fn func(store.Record) bool) error {
	return s.inChunks(start, func(from string, batch []store.Record) ([]store.Record, bool) {
		s.tombs.ascend("", from, func(it *item[struct{}]) bool {
			if r := s.records.get(it.key); r != nil {
				batch = append(batch, r.val.Clone())
			}
			return len(batch) < scanChunk
		})
		return batch, len(batch) == scanChunk
	}, fn)
}

// Remove deletes key's record if it still holds version v, and does nothing
// otherwise.
func (s *Store) Remove(key []byte, v store.Version) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if it := s.records.get(string(key)); it != nil && it.val.Version == v {
		s.digest.Remove(it.val.Item())
		s.records.remove(string(key))
		s.tombs.remove(string(key))
		s.unindex(string(key))
	}
	return nil
}

// GetMeta returns a copy of the metadata value stored under key.
func (s *Store) GetMeta(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false, store.ErrClosed
	}
	it := s.meta.get(string(key))
	if it == nil {
		return nil, false, nil
	}
	return cloneNonNil(it.val), true, nil
}

// SetMeta stores a copy of value under key, or deletes key when value is nil.
func (s *Store) SetMeta(key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if value == nil {
		s.meta.remove(string(key))
		return nil
	}
	s.meta.put(string(key), cloneNonNil(value))
	return nil
}

// ScanMeta calls fn with copies of every metadata entry whose key has prefix,
// in key order, until fn returns false. Like Scan, it calls fn without the
// lock held.
func (s *Store) ScanMeta(prefix []byte, fn func(key, value []byte) bool) error {
	type kv struct{ k, v []byte }
	batch := make([]kv, 0, scanChunk)
	from := string(prefix)
	for {
		batch = batch[:0]
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return store.ErrClosed
		}
		size := 0
		s.meta.ascend(string(prefix), from, func(it *item[[]byte]) bool {
			batch = append(batch, kv{[]byte(it.key), cloneNonNil(it.val)})
			size += len(it.key) + len(it.val)
			return len(batch) < scanChunk && size < scanChunkBytes
		})
		s.mu.RUnlock()
		for _, e := range batch {
			if !fn(e.k, e.v) {
				return nil
			}
		}
		if len(batch) == 0 || (len(batch) < scanChunk && size < scanChunkBytes) {
			return nil
		}
		from = string(batch[len(batch)-1].k) + "\x00"
	}
}

// Sync does nothing: an in-memory store has nothing to make durable. It
// returns store.ErrClosed once the store is closed.
func (s *Store) Sync() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// Close drops the store's contents. Later calls to any method, Close
// included, return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	s.records = nil
	s.meta = nil
	s.byHash = nil
	s.tombs = nil
	s.log, s.head, s.logBytes = nil, 0, 0
	return nil
}

// cloneNonNil copies b, returning an empty non-nil slice for an empty b, so
// that a metadata value set to []byte{} reads back as present and empty.
func cloneNonNil(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}
