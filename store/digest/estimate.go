package digest

import "math"

// Recovered returns how many items of the difference have been peeled.
func (d *Decoder) Recovered() int { return len(d.peeled) }

// EstimateSize estimates the number of items in the whole difference
// from which cells of the difference arrived empty: cell i holds each item
// with probability about 2/(i+2) (the mapping's density), so with d items it
// is empty with probability (1 − 2/(i+2))^d. The cells as they arrived are
// used, not what peeling leaves: a cell emptied by peeling held exactly one
// item, and counting it would bias the estimate low.
//
// It returns the maximum-likelihood d (at least Recovered) and how many
// cells (cell 0 aside) arrived empty: the estimate's relative error is
// about 1/sqrt(empties). With no empty cell the likelihood has no maximum;
// it then returns the d at which one empty cell would be expected, a lower
// bound in all likelihood.
//
// A sender of cells uses it to size the next prefix: the difference
// decodes from about 1.35·d cells, so asking for that many replaces a
// doubling search that overshoots by up to 2x.
func (d *Decoder) EstimateSize() (size float64, empties int) {
	// Per cell i ≥ 1: q_i = 1 − p_i, the probability that one item misses
	// it. Cell 0 holds every item and tells nothing about how many.
	var lnEmpty float64 // Σ ln q_i over cells that arrived empty
	var lqs []float64   // ln q_i of every cell
	var full []float64  // ln q_i of the cells that arrived with items
	for i := 1; i < len(d.cells); i++ {
		lq := math.Log1p(-2 / (float64(i) + 2))
		lqs = append(lqs, lq)
		if d.arrivedZero[i] {
			lnEmpty += lq
			empties++
		} else {
			full = append(full, lq)
		}
	}
	rec := float64(len(d.peeled))
	if len(full) == 0 {
		if len(d.cells) > 0 && d.arrivedZero[0] {
			return 0, empties
		}
		return max(rec, 1), empties
	}
	// f is decreasing in m: the score dL/dm when some cells arrived empty,
	// else the expected number of empty cells minus one.
	f := func(m float64) float64 {
		s := lnEmpty
		for _, lq := range full {
			qm := math.Exp(m * lq)
			s -= qm * lq / (1 - qm)
		}
		return s
	}
	if empties == 0 {
		f = func(m float64) float64 {
			s := -1.0
			for _, lq := range lqs {
				s += math.Exp(m * lq)
			}
			return s
		}
	}
	lo, hi := 1.0, 1.0
	for f(hi) > 0 && hi < 1e12 {
		lo, hi = hi, hi*4
	}
	for range 60 {
		if hi/lo < 1.001 {
			break
		}
		mid := math.Sqrt(lo * hi)
		if f(mid) > 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return max(rec, math.Sqrt(lo*hi)), empties
}
