package antientropy

import (
	"math/rand/v2"
	"testing"

	"github.com/hearsaydb/hearsay/store/digest"
)

// reconcileCells runs the digest exchange's cell requests between two sets
// that differ by d items (half on each side), as askMore sizes them, and
// returns the cells sent and the requests made.
func reconcileCells(t *testing.T, seed uint64, common, d int) (cells, rounds int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	const size = 1 << 16
	a, b := digest.New(size), digest.New(size)
	item := func() digest.Item {
		return digest.Item{KeyHash: rng.Uint64(), HLC: rng.Uint64(), Tag: rng.Uint64() &^ 1}
	}
	for range common {
		it := item()
		a.Add(it)
		b.Add(it)
	}
	for i := range d {
		if i%2 == 0 {
			a.Add(item())
		} else {
			b.Add(item())
		}
	}
	sa, sb := a.Snapshot(), b.Snapshot()
	var dec digest.Decoder
	n := 16 // InitialCells
	for {
		rounds++
		diff := make([]digest.Cell, 0, n-dec.Len())
		for i := dec.Len(); i < n; i++ {
			diff = append(diff, sa[i].Sub(sb[i]))
		}
		if err := dec.Add(diff); err != nil {
			t.Fatal(err)
		}
		if dec.Done() {
			break
		}
		if dec.Len() >= size {
			t.Fatalf("d=%d: not decoded from %d cells", d, size)
		}
		est, empties := dec.EstimateSize()
		n = min(nextPrefix(dec.Len(), est, empties), dec.Len()+maxCellsPerMessage, size)
	}
	if got := len(dec.Remote()) + len(dec.Local()); got != d {
		t.Fatalf("d=%d: decoded %d items", d, got)
	}
	return dec.Len(), rounds
}

// TestPrefixGrowthNearTheCodesNeed checks the cost of the digest phase over
// several seeds: about 1.4 cells per differing item for large differences
// (the rateless code needs about 1.35; doubling the prefix cost 2.5 to
// 4), in fewer requests than doubling (15 at d = 10^4),
// one request for equal sets, two for a single difference.
func TestPrefixGrowthNearTheCodesNeed(t *testing.T) {
	for _, c := range []struct {
		d          int
		maxPerItem float64
		maxRounds  int
	}{
		{0, 0, 1},
		{1, 0, 2},
		{100, 1.8, 6},
		{1000, 1.6, 9},
		{10000, 1.5, 10},
	} {
		total, rounds := 0, 0
		const seeds = 5
		for seed := range uint64(seeds) {
			cells, r := reconcileCells(t, seed, 2000, c.d)
			total += cells
			rounds = max(rounds, r)
		}
		per := 0.0
		if c.d > 0 {
			per = float64(total) / seeds / float64(c.d)
		}
		t.Logf("d=%d: %.3f cells per differing item (mean of %d seeds), at most %d requests", c.d, per, seeds, rounds)
		if c.d > 1 && per > c.maxPerItem {
			t.Errorf("d=%d: %.3f cells per item, want at most %.2f", c.d, per, c.maxPerItem)
		}
		if rounds > c.maxRounds {
			t.Errorf("d=%d: %d requests, want at most %d", c.d, rounds, c.maxRounds)
		}
	}
}
