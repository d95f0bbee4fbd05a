package digest

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrInconsistent means the cells given to a Decoder cannot be the
// difference of two honest digests: an item peeled twice, or more items
// than the cells could hold.
var ErrInconsistent = errors.New("digest: inconsistent cells")

// ErrMalformed means encoded cells do not parse.
var ErrMalformed = errors.New("digest: malformed cells")

// peeled is an item the decoder recovered, with where its index sequence
// has got to: every index below m.idx has had the item removed.
type peeled struct {
	it   Item
	h    uint64
	sign int64
	m    mapping
}

// Decoder peels the difference of two sets from growing prefixes of their
// cells (Yang et al. §4.3): a cell holding exactly one item yields it, the
// item is removed from every other cell it maps to, which may leave more
// cells holding one item, and so on. Feed it prefixes with Add until Done.
type Decoder struct {
	cells []Cell
	// arrivedZero[i] is whether cell i of the difference arrived empty,
	// before any peeling (EstimateSize).
	arrivedZero []bool
	peeled      []peeled
	seen        map[Item]struct{}
	queue       []int
	err         error
}

// Add appends the next cells of the difference, remote minus local (Cell.Sub),
// and peels as far as it can. It returns the decoder's error, if any: once
// inconsistent, a decoder stays so.
func (d *Decoder) Add(diff []Cell) error {
	if d.err != nil {
		return d.err
	}
	start := len(d.cells)
	d.cells = append(d.cells, diff...)
	for _, c := range diff {
		d.arrivedZero = append(d.arrivedZero, c.IsZero())
	}
	n := uint64(len(d.cells))
	for i := range d.peeled {
		p := &d.peeled[i]
		for ; p.m.idx < n; p.m.next() {
			d.cells[p.m.idx].apply(p.it, p.h, -p.sign)
		}
	}
	// The cells held before were left without a pure cell, and removing
	// the peeled items above touched only the new ones: scan those.
	for i := start; i < len(d.cells); i++ {
		if d.cells[i].pure() {
			d.queue = append(d.queue, i)
		}
	}
	d.peel()
	return d.err
}

// peel recovers items from pure cells until none is left.
func (d *Decoder) peel() {
	if d.seen == nil {
		d.seen = map[Item]struct{}{}
	}
	n := uint64(len(d.cells))
	for len(d.queue) > 0 {
		i := d.queue[len(d.queue)-1]
		d.queue = d.queue[:len(d.queue)-1]
		c := d.cells[i]
		if !c.pure() {
			continue
		}
		if _, dup := d.seen[c.Sum]; dup || len(d.peeled) >= 2*len(d.cells)+16 {
			d.err = fmt.Errorf("%w: item %x/%x peeled twice, or more items than cells allow", ErrInconsistent, c.Sum.KeyHash, c.Sum.Tag)
			return
		}
		d.seen[c.Sum] = struct{}{}
		p := peeled{it: c.Sum, h: c.Check, sign: c.Count, m: mapping{prng: c.Check}}
		for ; p.m.idx < n; p.m.next() {
			j := p.m.idx
			d.cells[j].apply(p.it, p.h, -p.sign)
			if d.cells[j].pure() {
				d.queue = append(d.queue, int(j))
			}
		}
		d.peeled = append(d.peeled, p)
	}
}

// Done reports whether the difference is fully decoded: every cell is
// empty once the recovered items are removed. Cell 0 holds every item, so a
// prefix of one empty cell already tells equal sets apart from unequal
// ones, up to a hash collision.
func (d *Decoder) Done() bool {
	if d.err != nil || len(d.cells) == 0 {
		return false
	}
	for _, c := range d.cells {
		if !c.IsZero() {
			return false
		}
	}
	return true
}

// Len returns the number of cells added so far.
func (d *Decoder) Len() int { return len(d.cells) }

// Remote returns the items recovered with count +1: in the remote set only.
func (d *Decoder) Remote() []Item { return d.items(1) }

// Local returns the items recovered with count -1: in the local set only.
func (d *Decoder) Local() []Item { return d.items(-1) }

func (d *Decoder) items(sign int64) []Item {
	var out []Item
	for _, p := range d.peeled {
		if p.sign == sign {
			out = append(out, p.it)
		}
	}
	return out
}

// AppendCells appends the encoding of cells to dst: for each, the item's
// three words and the checksum as little-endian uint64s, then the count as
// a zigzag varint.
func AppendCells(dst []byte, cells []Cell) []byte {
	for _, c := range cells {
		dst = binary.LittleEndian.AppendUint64(dst, c.Sum.KeyHash)
		dst = binary.LittleEndian.AppendUint64(dst, c.Sum.HLC)
		dst = binary.LittleEndian.AppendUint64(dst, c.Sum.Tag)
		dst = binary.LittleEndian.AppendUint64(dst, c.Check)
		dst = binary.AppendVarint(dst, c.Count)
	}
	return dst
}

// ParseCells decodes cells encoded by AppendCells, refusing more than limit
// of them. Truncated input, a bad varint or trailing bytes are errors
// wrapping ErrMalformed.
func ParseCells(b []byte, limit int) ([]Cell, error) {
	var out []Cell
	for len(b) > 0 {
		if len(out) >= limit {
			return nil, fmt.Errorf("%w: more than %d cells", ErrMalformed, limit)
		}
		if len(b) < CellWireSize {
			return nil, fmt.Errorf("%w: cell %d truncated (%d bytes left)", ErrMalformed, len(out), len(b))
		}
		c := Cell{
			Sum: Item{
				KeyHash: binary.LittleEndian.Uint64(b[0:]),
				HLC:     binary.LittleEndian.Uint64(b[8:]),
				Tag:     binary.LittleEndian.Uint64(b[16:]),
			},
			Check: binary.LittleEndian.Uint64(b[24:]),
		}
		cnt, n := binary.Varint(b[CellWireSize:])
		if n <= 0 {
			return nil, fmt.Errorf("%w: cell %d: bad count varint", ErrMalformed, len(out))
		}
		c.Count = cnt
		out = append(out, c)
		b = b[CellWireSize+n:]
	}
	return out, nil
}
