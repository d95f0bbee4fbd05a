// Package store holds a hearsay replica: the record type, the last-writer-wins
// merge rule, and the Store interface that the protocol engine reads and writes.
//
// The store knows nothing of the protocol. It keeps records (key, value,
// version, tombstone) and a small side namespace of metadata (node identity,
// clock high-water mark, direct-mail outboxes), and it merges every write by
// version so that the same record arriving twice, late or out of order
// changes nothing.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/hearsaydb/hearsay/store/digest"
)

// Limits on what a record may hold. Values larger than MaxValueSize are
// refused by the node before they reach the store; the limit is a default that
// Config can lower or raise.
const (
	// MaxKeySize is the largest key, in bytes.
	MaxKeySize = 1 << 10
	// DefaultMaxValueSize is the default largest value, in bytes.
	DefaultMaxValueSize = 1 << 20
)

// ErrClosed is returned by a store that has been closed.
var ErrClosed = errors.New("store: closed")

// ErrCompacted is returned (wrapped) by Store.Changes when the change log no
// longer reaches back to the revision asked for: its oldest entries were
// trimmed to keep it within its limits.
var ErrCompacted = errors.New("store: change log no longer reaches back that far")

// Default bounds of a store's change log (ChangeLogLimits).
const (
	// DefaultChangeLogEntries is how many changes the log keeps at most.
	DefaultChangeLogEntries = 100_000
	// DefaultChangeLogBytes is how many bytes of changes (ChangeSize each)
	// the log keeps at most.
	DefaultChangeLogBytes = 64 << 20
)

// ChangeLogLimits bound a store's change log: when either limit is passed,
// the oldest changes are trimmed, down to TrimTo. Zero means the default; a negative
// limit keeps no change at all (revisions are still counted).
type ChangeLogLimits struct {
	// Entries is the most changes kept (DefaultChangeLogEntries).
	Entries int
	// Bytes is the most bytes of changes kept, ChangeSize each
	// (DefaultChangeLogBytes).
	Bytes int64
}

// Resolve returns l with zero limits replaced by the defaults and negative
// ones by 0 (keep nothing).
func (l ChangeLogLimits) Resolve() ChangeLogLimits {
	switch {
	case l.Entries == 0:
		l.Entries = DefaultChangeLogEntries
	case l.Entries < 0:
		l.Entries = 0
	}
	switch {
	case l.Bytes == 0:
		l.Bytes = DefaultChangeLogBytes
	case l.Bytes < 0:
		l.Bytes = 0
	}
	return l
}

// TrimTo returns what a change log that went over l (resolved) is trimmed
// down to: 7/8 of each limit, so that trimming, which costs a range
// deletion in a durable store, happens once per eighth of the log rather
// than at every change. A log never holds more than l.
func (l ChangeLogLimits) TrimTo() (entries int, bytes int64) {
	return l.Entries - l.Entries/8, l.Bytes - l.Bytes/8
}

// ChangeSize is what one change counts against ChangeLogLimits.Bytes: the
// record's size and its revision.
func ChangeSize(r Record) int64 { return int64(r.Size()) + 8 }

// ChangeLogStats describes a store's change log.
type ChangeLogStats struct {
	// Revision is the revision of the last change (Store.Revision).
	Revision uint64
	// First is the oldest revision the log holds, 0 when it holds none.
	// The log holds every revision from First through Revision.
	First uint64
	// Entries and Bytes are what the log holds, counted as the limits
	// count them.
	Entries int
	Bytes   int64
}

// Errors a durable store returns when its disk fails it, for use with
// errors.Is. They are always wrapped with the operation and the cause.
var (
	// ErrNoSpace means the store refuses writes because its volume is full
	// (a write or a flush met ENOSPC). Reads keep working; the store takes
	// writes again once space is freed and it has recovered (see
	// pebblestore.Store.Recover).
	ErrNoSpace = errors.New("store: no space left on device")
	// ErrFailed means a write or a sync failed in a way that leaves the
	// durability of earlier writes unknown (an fsync error): the store
	// refuses every write until it is reopened, which recovers what is
	// durable. Reads keep working.
	ErrFailed = errors.New("store: storage failed")
)

// Version orders writes totally: a hybrid logical clock timestamp, then the id
// of the node that wrote. Two writes never share a version because a node
// never issues the same timestamp twice.
type Version struct {
	// HLC is the hybrid logical clock reading: physical milliseconds in the
	// high 48 bits, a logical counter in the low 16 (see internal/hlc).
	HLC uint64
	// Node is the id of the writing node.
	Node uint64
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than o.
func (v Version) Compare(o Version) int {
	switch {
	case v.HLC < o.HLC:
		return -1
	case v.HLC > o.HLC:
		return 1
	case v.Node < o.Node:
		return -1
	case v.Node > o.Node:
		return 1
	}
	return 0
}

// IsZero reports whether v is the zero version, which no write carries.
func (v Version) IsZero() bool { return v.HLC == 0 && v.Node == 0 }

// String formats v as hlc@node in hex, the form used in logs and the API;
// the node id is zero-padded to 16 digits, as everywhere else it prints.
func (v Version) String() string {
	// As fmt's "%x@%016x", without its allocations: a version goes into
	// every write's answer and every read's header.
	var b [16 + 1 + 16]byte
	out := strconv.AppendUint(b[:0], v.HLC, 16)
	out = append(out, '@')
	var node [16]byte
	n := strconv.AppendUint(node[:0], v.Node, 16)
	for range 16 - len(n) {
		out = append(out, '0')
	}
	return string(append(out, n...))
}

// Record is one key's replicated state. A delete is a record with Tombstone
// set and no value: a death certificate that replicates like any write.
type Record struct {
	Key       []byte
	Value     []byte
	Version   Version
	Tombstone bool
	// Sig is, in a certificate cluster, the origin node's signature over
	// the record (see engine.SignedBytes); nil in an unsigned cluster. The
	// store keeps it with the record and knows nothing else of it.
	Sig []byte
	// Revision is the local revision of the change that wrote this record
	// here (see Store.Revision): set by Apply on the records it is given
	// that changed the store, and on the records Changes returns; zero
	// elsewhere (Get, Scan, records received from peers). It is local to
	// one store: never replicated, not part of the record's identity, and
	// ignored by Wins and Merge.
	Revision uint64
}

// Size is the number of bytes the record accounts for in bounds and metrics:
// key and value plus a fixed overhead for the version.
func (r Record) Size() int { return len(r.Key) + len(r.Value) + len(r.Sig) + 17 }

// Clone returns a copy of r that shares no memory with it.
func (r Record) Clone() Record {
	r.Key = bytes.Clone(r.Key)
	r.Value = bytes.Clone(r.Value)
	r.Sig = bytes.Clone(r.Sig)
	return r
}

// Wins reports whether r should replace cur under last-writer-wins: r has the
// higher version. Equal versions come from the same write, so normally hold
// the same content; if a faulty peer sends different content under the same
// version, a fixed tie-break (tombstone first, then the larger value) keeps
// the merge commutative, so every replica still picks the same record.
func (r Record) Wins(cur Record) bool {
	if c := r.Version.Compare(cur.Version); c != 0 {
		return c > 0
	}
	if r.Tombstone != cur.Tombstone {
		return r.Tombstone
	}
	return bytes.Compare(r.Value, cur.Value) > 0
}

// Item returns r's identity in the anti-entropy digest.
func (r Record) Item() digest.Item {
	return digest.ItemOf(r.Key, r.Version.HLC, r.Version.Node, r.Tombstone)
}

// Merge returns whichever of a and b wins last-writer-wins. It is
// commutative, associative and idempotent, which is what lets replicas apply
// updates in any order, any number of times.
func Merge(a, b Record) Record {
	if b.Wins(a) {
		return b
	}
	return a
}

// Store is a replica. Implementations are safe for concurrent use: the
// engine's event loop writes while API handlers read.
//
// Apply makes writes visible at once but durable only after Sync, so that the
// runtime can commit many writes with one fsync (group commit).
type Store interface {
	// Get returns the record stored for key, tombstones included; ok is
	// false when the store holds no record for key.
	Get(key []byte) (rec Record, ok bool, err error)
	// Apply merges each record last-writer-wins and reports, for each,
	// whether it changed the store (it was new, or newer than what was held).
	// Each record that changed the store is a change: it gets the next
	// revision, set in recs[i].Revision, and goes into the change log, in
	// the same atomic write as the record.
	Apply(recs []Record) (changed []bool, err error)
	// Scan calls fn for every record whose key has the given prefix and is
	// at or after start, in key order, tombstones included, until fn returns
	// false.
	Scan(prefix, start []byte, fn func(Record) bool) error
	// ScanTombstones calls fn for every tombstone whose key is at or after
	// start, in key order, until fn returns false. It visits tombstones
	// only, through an index, so its cost follows their number and not
	// the store's size: the tombstone sweep uses it.
	ScanTombstones(start []byte, fn func(Record) bool) error
	// Remove deletes key's record if it still holds version v: used to
	// collect tombstones after their grace period without racing a newer
	// write.
	Remove(key []byte, v Version) error

	// Digest returns the anti-entropy digest of the records held (see
	// package digest), which Apply and Remove keep up to date in place:
	// reading it never rescans the store.
	Digest() *digest.Digest
	// GetByHash returns the records whose key hashes to h (digest.KeyHash),
	// in key order: how a decoded digest item finds its record. There is
	// more than one only on a 64-bit hash collision.
	GetByHash(h uint64) ([]Record, error)

	// GetMeta, SetMeta and ScanMeta reach the metadata namespace, which is
	// apart from the records and never replicated. SetMeta with a nil value
	// deletes the entry.
	GetMeta(key []byte) (value []byte, ok bool, err error)
	SetMeta(key, value []byte) error
	ScanMeta(prefix []byte, fn func(key, value []byte) bool) error

	// Revision returns the revision of the last change Apply made, 0 if
	// none: changes are numbered 1, 2, 3… in the order they are applied.
	// A durable store keeps the revision with the change, so after a
	// reopen it is never below the revision of any change a Sync made
	// durable, and every revision stands for the same change as before.
	// Remove is not a change.
	Revision() uint64
	// Changes calls fn with each change after revision after, in revision
	// order (the record as that change wrote it, Revision set), until fn
	// returns false or the log's last change. When the log no longer holds
	// revision after+1 (the change log is bounded, see ChangeLogLimits) it
	// returns an error wrapping ErrCompacted, before calling fn or, if
	// entries were trimmed while it ran, after the last contiguous one. Like
	// Scan it calls fn with no lock held.
	Changes(after uint64, fn func(Record) bool) error
	// ChangeLog describes the change log.
	ChangeLog() ChangeLogStats

	// Sync makes every Apply, Remove and SetMeta before it durable.
	Sync() error
	// Close releases the store. Later calls return ErrClosed.
	Close() error
}

// Errors returned by Check.
var (
	ErrEmptyKey      = errors.New("empty key")
	ErrKeyTooLarge   = errors.New("key too large")
	ErrValueTooLarge = errors.New("value too large")
)

// Check validates a record's sizes against the key limit and the given
// value limit (DefaultMaxValueSize when maxValue <= 0). Every record is
// checked before it is stored, whether written here or received.
func Check(r Record, maxValue int) error {
	if maxValue <= 0 {
		maxValue = DefaultMaxValueSize
	}
	switch {
	case len(r.Key) == 0:
		return ErrEmptyKey
	case len(r.Key) > MaxKeySize:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(r.Key), MaxKeySize)
	case len(r.Value) > maxValue:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(r.Value), maxValue)
	}
	return nil
}
