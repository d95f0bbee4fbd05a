package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/hearsaydb/hearsay/store"
)

// The change log (store.Store.Changes): one entry per change under
// 'c' + revision (big-endian uint64), its value the changed record:
//
//	uvarint key length | key | record encoding (encodeRecord)
//
// The revision counter is the internal key "revision" (big-endian uint64).
// Both are written in the batch that writes the records, so a change, its
// log entry and its revision are durable together or not at all. The
// oldest entries are trimmed, in the same batch, with a range deletion.
// At open the log is read once (it is bounded) to learn its extent and
// the size of each entry.

// keyRevision is the internal key of the revision counter.
const keyRevision = "revision"

// changeLog is the store's in-memory picture of its change log, guarded by
// wmu for writing and by logMu for reading.
type changeLog struct {
	limits store.ChangeLogLimits
	rev    uint64
	// sizes[head:] are the sizes (store.ChangeSize) of the entries from
	// revision rev-len(sizes)+head+1 through rev.
	sizes []int64
	head  int
	bytes int64
}

func (l *changeLog) entries() int { return len(l.sizes) - l.head }

func (l *changeLog) first() uint64 {
	if l.entries() == 0 {
		return 0
	}
	return l.rev - uint64(l.entries()) + 1
}

// push records a new entry; drop removes the n oldest.
func (l *changeLog) push(size int64) {
	l.sizes = append(l.sizes, size)
	l.bytes += size
}

func (l *changeLog) drop(n int) {
	for range n {
		l.bytes -= l.sizes[l.head]
		l.head++
	}
	if l.head > 1024 && l.head > len(l.sizes)/2 {
		l.sizes = append([]int64(nil), l.sizes[l.head:]...)
		l.head = 0
	}
}

// excess returns how many of the oldest entries must go for the log, with
// adds appended, to be within its limits: none while it is, else down to
// ChangeLogLimits.TrimTo, so that one range deletion trims an eighth of
// the log.
func (l *changeLog) excess(adds []int64) int {
	n, bytes := l.entries()+len(adds), l.bytes
	for _, a := range adds {
		bytes += a
	}
	if n <= l.limits.Entries && bytes <= l.limits.Bytes {
		return 0
	}
	maxN, maxBytes := l.limits.TrimTo()
	drop := 0
	for n > 0 && (n > maxN || bytes > maxBytes) {
		if drop < l.entries() {
			bytes -= l.sizes[l.head+drop]
		} else {
			bytes -= adds[drop-l.entries()]
		}
		drop++
		n--
	}
	return drop
}

func changeKey(rev uint64) []byte {
	k := make([]byte, 9)
	k[0] = nsChange
	binary.BigEndian.PutUint64(k[1:], rev)
	return k
}

func encodeChange(r store.Record) []byte {
	b := make([]byte, changeLen(r))
	putChange(b, r)
	return b
}

// changeLen returns the length of r's change log entry.
func changeLen(r store.Record) int {
	var n [binary.MaxVarintLen64]byte
	return binary.PutUvarint(n[:], uint64(len(r.Key))) + len(r.Key) + encodedLen(r)
}

// putChange writes r's change log entry into dst, of changeLen(r) bytes.
func putChange(dst []byte, r store.Record) {
	n := binary.PutUvarint(dst, uint64(len(r.Key)))
	n += copy(dst[n:], r.Key)
	encodeRecord(dst[n:], r)
}

// decodeChange decodes the log entry stored under pebble key k, value v.
func decodeChange(k, v []byte) (store.Record, error) {
	if len(k) != 9 || k[0] != nsChange {
		return store.Record{}, fmt.Errorf("%w: change log key %x", ErrCorrupt, k)
	}
	rev := binary.BigEndian.Uint64(k[1:])
	kl, n := binary.Uvarint(v)
	if n <= 0 || kl == 0 || kl > store.MaxKeySize || uint64(len(v)-n) < kl {
		return store.Record{}, fmt.Errorf("%w: change %d: bad key length", ErrCorrupt, rev)
	}
	key := v[n : n+int(kl)]
	r, err := decodeRecord(key, v[n+int(kl):])
	if err != nil {
		return store.Record{}, fmt.Errorf("change %d: %w", rev, err)
	}
	r.Revision = rev
	return r, nil
}

// loadLog reads the revision counter and the change log's extent, and
// trims the log to the limits (which may have been lowered since it was
// written). The caller holds wmu, or owns the store.
func (s *Store) loadLog() error {
	l := changeLog{limits: s.opts.ChangeLog.Resolve()}
	v, closer, err := s.db.Get(dbKey(nsInternal, []byte(keyRevision)))
	switch {
	case err == nil:
		if len(v) != 8 {
			_ = closer.Close()
			return fmt.Errorf("%w: revision counter of %d bytes", ErrCorrupt, len(v))
		}
		l.rev = binary.BigEndian.Uint64(v)
		_ = closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("read revision: %w", err)
	}
	var first, last uint64
	lower, upper := []byte{nsChange}, []byte{nsChange + 1}
	for {
		more, err := s.scanChunk(lower, upper, func(k, v []byte) error {
			r, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			switch {
			case first == 0:
				first = r.Revision
			case r.Revision != last+1:
				return fmt.Errorf("%w: change log skips from %d to %d", ErrCorrupt, last, r.Revision)
			}
			last = r.Revision
			l.push(store.ChangeSize(r))
			return nil
		})
		if err != nil {
			return fmt.Errorf("read change log: %w", err)
		}
		if !more {
			break
		}
		lower = changeKey(last + 1)
	}
	if first != 0 && last != l.rev {
		return fmt.Errorf("%w: change log ends at %d, revision is %d", ErrCorrupt, last, l.rev)
	}
	if drop := l.excess(nil); drop > 0 {
		b := s.db.NewBatch()
		defer func() { _ = b.Close() }()
		if err := b.DeleteRange(changeKey(l.first()), changeKey(l.first()+uint64(drop)), nil); err != nil {
			return fmt.Errorf("trim change log: %w", err)
		}
		if err := s.guard(false, func() error { return s.db.Apply(b, pebble.Sync) }); err != nil {
			return fmt.Errorf("trim change log: %w", err)
		}
		l.drop(drop)
	}
	s.logMu.Lock()
	s.clog = l
	s.logMu.Unlock()
	return nil
}

// Revision returns the revision of the last change.
func (s *Store) Revision() uint64 {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	return s.clog.rev
}

// ChangeLog describes the change log.
func (s *Store) ChangeLog() store.ChangeLogStats {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	return store.ChangeLogStats{Revision: s.clog.rev, First: s.clog.first(), Entries: s.clog.entries(), Bytes: s.clog.bytes}
}

// Changes calls fn for each change after revision after, in revision
// order, reading the log in chunks with no lock held while fn runs.
func (s *Store) Changes(after uint64, fn func(store.Record) bool) error {
	next := after + 1
	var batch []store.Record
	for {
		s.logMu.RLock()
		rev, first := s.clog.rev, s.clog.first()
		s.logMu.RUnlock()
		if next > rev {
			return nil
		}
		if first == 0 || next < first {
			return fmt.Errorf("pebblestore: changes after %d: %w (it holds %d through %d)", next-1, store.ErrCompacted, first, rev)
		}
		batch = batch[:0]
		_, err := s.scanChunk(changeKey(next), []byte{nsChange + 1}, func(k, v []byte) error {
			r, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			if r.Revision != next+uint64(len(batch)) {
				return errTrimmed
			}
			batch = append(batch, r)
			return nil
		})
		if err != nil && !errors.Is(err, errTrimmed) {
			return fmt.Errorf("pebblestore: changes after %d: %w", next-1, err)
		}
		if len(batch) == 0 {
			// Trimmed between the look at the extent and the read.
			return fmt.Errorf("pebblestore: changes after %d: %w", next-1, store.ErrCompacted)
		}
		for _, r := range batch {
			if !fn(r) {
				return nil
			}
		}
		next += uint64(len(batch))
	}
}

// errTrimmed stops a chunk of Changes at a gap.
var errTrimmed = errors.New("change log trimmed under the reader")
