// Package digest summarises a replica for anti-entropy: a rateless
// invertible Bloom lookup table (Yang, Gilad and Alizadeh, "Practical
// Rateless Set Reconciliation", SIGCOMM 2024) over the identities of the
// records it holds.
//
// Every record is an Item (a hash of its key, its version's clock reading
// and a tag hashing the whole version and the tombstone flag). Each item
// maps to a deterministic pseudo-random, infinite, increasing sequence of
// cell indices, starting at 0, whose density at index i is about
// 1/(1+i/2); a cell (coded symbol) is the XOR of the items mapped to it,
// the XOR of their hashes and their count. A Digest keeps the first n cells
// of its set in memory and updates them in place, O(log n) cells per item,
// whenever a record is added or removed: starting an exchange never rescans
// the store (the idea of Riak's Tictac AAE, with a rateless code instead of
// a fixed tree).
//
// To reconcile, one side sends a prefix of its cells; the other subtracts
// its own prefix and peels the difference with a Decoder. A difference of d
// items decodes from about 1.35·d cells on average, whatever the sets'
// sizes, and equal sets are recognised from the first cell. Prefixes grow
// until the decoder succeeds, so the digest is rateless: no estimate of d is
// needed up front.
package digest

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// ItemSize is the encoded size of an Item, in bytes.
const ItemSize = 24

// CellWireSize is the encoded size of a cell without its count; the count
// follows as a zigzag varint (see AppendCells).
const CellWireSize = ItemSize + 8

// Item identifies one record: equal records have equal items, and any
// difference in key, version or tombstone flag gives another item (up to
// 64-bit hash collisions).
type Item struct {
	// KeyHash is KeyHash(key): how a decoded item finds its record.
	KeyHash uint64
	// HLC is the version's clock reading, in the clear so that a decoder
	// can tell which side of a conflict is newer without fetching records,
	// and how old a tombstone is.
	HLC uint64
	// Tag hashes key, HLC, node id and tombstone flag; its lowest bit is the
	// tombstone flag itself.
	Tag uint64
}

// Tombstone reports whether the item is a death certificate.
func (it Item) Tombstone() bool { return it.Tag&1 == 1 }

// IsZero reports whether it is the zero item, the sum of an empty cell.
func (it Item) IsZero() bool { return it == Item{} }

// xor returns it XOR o.
func (it Item) xor(o Item) Item {
	return Item{it.KeyHash ^ o.KeyHash, it.HLC ^ o.HLC, it.Tag ^ o.Tag}
}

// hash is the item's checksum hash, also the seed of its index sequence.
func (it Item) hash() uint64 {
	var b [ItemSize]byte
	binary.LittleEndian.PutUint64(b[0:], it.KeyHash)
	binary.LittleEndian.PutUint64(b[8:], it.HLC)
	binary.LittleEndian.PutUint64(b[16:], it.Tag)
	return xxhash.Sum64(b[:])
}

// KeyHash returns the 64-bit hash of a key that items carry and that stores
// index records by.
func KeyHash(key []byte) uint64 { return xxhash.Sum64(key) }

// ItemOf returns the item of the record (key, hlc@node, tombstone).
func ItemOf(key []byte, hlc, node uint64, tombstone bool) Item {
	d := xxhash.New()
	var b [17]byte
	binary.LittleEndian.PutUint64(b[0:], hlc)
	binary.LittleEndian.PutUint64(b[8:], node)
	if tombstone {
		b[16] = 1
	}
	_, _ = d.Write(b[:])
	_, _ = d.Write(key)
	tag := d.Sum64() &^ 1
	if tombstone {
		tag |= 1
	}
	return Item{KeyHash: KeyHash(key), HLC: hlc, Tag: tag}
}

// Cell is one coded symbol: the XOR of the items mapped to it, the XOR of
// their hashes, and how many there are (negative in a difference when the
// subtracted side has more).
type Cell struct {
	Sum   Item
	Check uint64
	Count int64
}

// IsZero reports whether c is empty: no item, or items that cancel out.
func (c Cell) IsZero() bool { return c == Cell{} }

// apply adds (sign +1) or removes (sign -1) an item whose hash is h.
func (c *Cell) apply(it Item, h uint64, sign int64) {
	c.Sum = c.Sum.xor(it)
	c.Check ^= h
	c.Count += sign
}

// Sub returns c minus o, cell by cell: the items of c not in o (count +1
// each) and of o not in c (count -1 each).
func (c Cell) Sub(o Cell) Cell {
	return Cell{Sum: c.Sum.xor(o.Sum), Check: c.Check ^ o.Check, Count: c.Count - o.Count}
}

// pure reports whether c holds exactly one item (counted +1 or -1), which
// the checksum confirms.
func (c Cell) pure() bool {
	return (c.Count == 1 || c.Count == -1) && c.Sum.hash() == c.Check
}

// mapping walks an item's index sequence.
type mapping struct {
	prng uint64
	idx  uint64
}

// beyond is an index past any prefix, where a sequence that jumps too far
// for uint64 arithmetic is parked.
const beyond = 1 << 62

// next advances to the item's next cell index. The gap is drawn so that
// index i is hit with probability about 1/(1+i/2) (Yang et al. §4.2): with
// r uniform in [0, 2^64), gap = ceil((i + 1.5)·(2^32/sqrt(r+1) − 1)). The
// explicit conversions keep the arithmetic exactly IEEE (no fused
// multiply-add), so every platform computes the same sequence.
func (m *mapping) next() uint64 {
	r := m.prng * 0xda942042e4dd58b5
	m.prng = r
	x := float64(float64(1<<32) / math.Sqrt(float64(r)+1))
	g := math.Ceil(float64((float64(m.idx) + 1.5) * float64(x-1)))
	switch {
	case g < 1:
		g = 1 // r near 2^64 rounds the gap to 0; never repeat an index
	case g > beyond || float64(m.idx)+g > beyond:
		m.idx = beyond
		return m.idx
	}
	m.idx += uint64(g)
	return m.idx
}

// Digest is the first n cells of a set of items, updated in place. It is
// safe for concurrent use.
type Digest struct {
	mu      sync.RWMutex
	cells   []Cell
	items   int64
	changes uint64
	// pinned, when not nil, is shared by the Views taken since the last
	// change: the next change copies the cells into it first.
	pinned *frozen
}

// frozen holds the cells as they were when the Views sharing it were
// taken, once the digest has changed since (nil until then: the Views
// read the live cells, which are still theirs).
type frozen struct{ cells []Cell }

// New returns the digest of the empty set with n cells (at least 1). A
// difference of up to about n/1.4 items can be decoded from n cells.
func New(n int) *Digest {
	return &Digest{cells: make([]Cell, max(n, 1))}
}

// Len returns the number of cells.
func (d *Digest) Len() int { return len(d.cells) }

// Items returns the number of items in the set.
func (d *Digest) Items() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.items
}

// Add adds an item to the set.
func (d *Digest) Add(it Item) { d.update(it, 1) }

// Remove removes an item from the set. Removing an item that was never
// added corrupts the digest: callers remove exactly what they added.
func (d *Digest) Remove(it Item) { d.update(it, -1) }

// Replace removes old (unless it is the zero item) and adds new, in one
// step for concurrent readers.
func (d *Digest) Replace(old, new Item) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !old.IsZero() {
		d.updateLocked(old, -1)
	}
	d.updateLocked(new, 1)
}

func (d *Digest) update(it Item, sign int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.updateLocked(it, sign)
}

func (d *Digest) updateLocked(it Item, sign int64) {
	d.freezeLocked()
	h := it.hash()
	m := mapping{prng: h}
	n := uint64(len(d.cells))
	for i := uint64(0); i < n; i = m.next() {
		d.cells[i].apply(it, h, sign)
	}
	d.items += sign
	d.changes++
}

// Changes returns how many items have been added or removed since the
// digest was made: equal counts at two instants mean the cells did not
// change in between.
func (d *Digest) Changes() uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.changes
}

// Reset empties the digest.
func (d *Digest) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.freezeLocked()
	clear(d.cells)
	d.items = 0
}

// freezeLocked gives the outstanding Views their copy before the cells
// change.
func (d *Digest) freezeLocked() {
	if d.pinned != nil {
		d.pinned.cells = slices.Clone(d.cells)
		d.pinned = nil
	}
}

// View is the digest's cells at one instant, read while the digest goes on
// changing: an anti-entropy exchange sends its cells over several round
// trips and must send those of one state. Taking a View copies nothing; the
// first change after it copies the cells once for every View taken since
// the previous change. An idle node's exchanges, which find the replicas
// equal, copy nothing at all.
type View struct {
	d   *Digest
	ref *frozen
}

// View returns the cells as they are now.
func (d *Digest) View() *View {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pinned == nil {
		d.pinned = &frozen{}
	}
	return &View{d: d, ref: d.pinned}
}

// Len returns the number of cells.
func (v *View) Len() int { return len(v.d.cells) }

// CopyCells copies cells [from, from+len(dst)) of the view (fewer at the
// end) into dst and returns how many it copied.
func (v *View) CopyCells(dst []Cell, from int) int {
	v.d.mu.RLock()
	defer v.d.mu.RUnlock()
	cells := v.ref.cells
	if cells == nil {
		cells = v.d.cells // unchanged since the view was taken
	}
	if from < 0 || from >= len(cells) {
		return 0
	}
	return copy(dst, cells[from:])
}

// Cells returns a copy of cells [from, to) of the view (fewer at the end).
func (v *View) Cells(from, to int) []Cell {
	if to > v.Len() {
		to = v.Len()
	}
	if from >= to {
		return nil
	}
	out := make([]Cell, to-from)
	return out[:v.CopyCells(out, from)]
}

// Snapshot returns a copy of the cells, consistent at one instant.
func (d *Digest) Snapshot() []Cell {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]Cell(nil), d.cells...)
}

// CopyCells copies cells [from, from+len(dst)) (fewer at the end) into dst
// and returns how many it copied.
func (d *Digest) CopyCells(dst []Cell, from int) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if from < 0 || from >= len(d.cells) {
		return 0
	}
	return copy(dst, d.cells[from:])
}

// Cells returns the cells of the set of items given, n of them: the digest
// computed from scratch, for tests and rebuilds.
func Cells(items []Item, n int) []Cell {
	d := New(n)
	for _, it := range items {
		d.updateLocked(it, 1)
	}
	return d.cells
}
