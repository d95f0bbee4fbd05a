package digest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func randItem(rng *rand.Rand) Item {
	return Item{KeyHash: rng.Uint64(), HLC: rng.Uint64(), Tag: rng.Uint64()}
}

// decode grows a prefix of a's cells minus b's until the decoder is done,
// doubling from start cells, and returns the decoder and the prefix used.
func decode(t testing.TB, a, b []Cell, start int) (*Decoder, int) {
	t.Helper()
	var dec Decoder
	n := 0
	for next := start; ; next *= 2 {
		end := min(next, len(a))
		diff := make([]Cell, end-n)
		for i := range diff {
			diff[i] = a[n+i].Sub(b[n+i])
		}
		if err := dec.Add(diff); err != nil {
			t.Fatalf("decode: %v", err)
		}
		n = end
		if dec.Done() {
			return &dec, n
		}
		if n == len(a) {
			t.Fatalf("not decoded from all %d cells", n)
		}
	}
}

func sortItems(s []Item) []Item {
	slices.SortFunc(s, func(a, b Item) int {
		switch {
		case a.KeyHash < b.KeyHash:
			return -1
		case a.KeyHash > b.KeyHash:
			return 1
		}
		return 0
	})
	return s
}

func TestDecodeRecoversDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range []int{0, 1, 2, 3, 10, 100, 1000, 5000} {
		t.Run(fmt.Sprint(d), func(t *testing.T) {
			common := make([]Item, 2000)
			for i := range common {
				common[i] = randItem(rng)
			}
			var onlyA, onlyB []Item
			for i := range d {
				if i%3 == 0 {
					onlyB = append(onlyB, randItem(rng))
				} else {
					onlyA = append(onlyA, randItem(rng))
				}
			}
			const n = 1 << 14
			a := Cells(append(slices.Clone(common), onlyA...), n)
			b := Cells(append(slices.Clone(common), onlyB...), n)
			dec, used := decode(t, a, b, 8)
			if got := sortItems(dec.Remote()); !slices.Equal(got, sortItems(onlyA)) {
				t.Fatalf("remote items: got %d, want %d", len(got), len(onlyA))
			}
			if got := sortItems(dec.Local()); !slices.Equal(got, sortItems(onlyB)) {
				t.Fatalf("local items: got %d, want %d", len(got), len(onlyB))
			}
			if d == 0 && used != 8 {
				t.Fatalf("equal sets took %d cells", used)
			}
			t.Logf("d=%d decoded from a prefix of %d cells", d, used)
		})
	}
}

// TestOverhead measures how many cells a difference of d items needs when
// the prefix grows one cell at a time: about 1.35·d for large d (Yang et
// al., Fig. 5), more for small d.
func TestOverhead(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, d := range []int{1, 10, 100, 1000} {
		const trials = 20
		total := 0
		for range trials {
			items := make([]Item, d)
			for i := range items {
				items[i] = randItem(rng)
			}
			a := Cells(items, 4*d+64)
			var dec Decoder
			for i := range a {
				if err := dec.Add(a[i : i+1]); err != nil {
					t.Fatal(err)
				}
				if dec.Done() {
					total += i + 1
					break
				}
			}
			if !dec.Done() {
				t.Fatalf("d=%d: not decoded from %d cells", d, len(a))
			}
		}
		ratio := float64(total) / float64(trials*d)
		t.Logf("d=%d: %.2f cells per item", d, ratio)
		if d >= 100 && ratio > 1.6 {
			t.Errorf("d=%d: %.2f cells per item, want about 1.35", d, ratio)
		}
	}
}

func TestIncrementalMatchesScratch(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 4096
	d := New(n)
	set := map[Item]bool{}
	for range 5000 {
		if len(set) > 0 && rng.IntN(3) == 0 {
			for it := range set {
				d.Remove(it)
				delete(set, it)
				break
			}
			continue
		}
		it := randItem(rng)
		d.Add(it)
		set[it] = true
	}
	var items []Item
	for it := range set {
		items = append(items, it)
	}
	if !slices.Equal(d.Snapshot(), Cells(items, n)) {
		t.Fatal("incremental digest differs from the digest computed from scratch")
	}
	if d.Items() != int64(len(items)) {
		t.Fatalf("Items() = %d, want %d", d.Items(), len(items))
	}
	for _, it := range items {
		d.Remove(it)
	}
	for i, c := range d.Snapshot() {
		if !c.IsZero() {
			t.Fatalf("cell %d not empty after removing everything: %+v", i, c)
		}
	}
}

func TestReplace(t *testing.T) {
	a, b := New(64), New(64)
	x := ItemOf([]byte("k"), 1, 1, false)
	y := ItemOf([]byte("k"), 2, 1, true)
	a.Add(x)
	a.Replace(x, y)
	b.Replace(Item{}, y)
	if !slices.Equal(a.Snapshot(), b.Snapshot()) {
		t.Fatal("Replace(x, y) after Add(x) differs from adding y alone")
	}
	if !y.Tombstone() || x.Tombstone() {
		t.Fatal("tombstone bit not carried by the tag")
	}
}

// TestSequenceGolden pins the index sequence and item hashing: nodes of
// different builds must compute the same cells.
func TestSequenceGolden(t *testing.T) {
	it := ItemOf([]byte("hello"), 0x0123456789abcdef, 42, false)
	m := mapping{prng: it.hash()}
	seq := []uint64{0}
	for range 12 {
		seq = append(seq, m.next())
	}
	got := fmt.Sprintf("%x %v", it, seq)
	const want = "{26c7827d889f6da3 123456789abcdef 1f2e8e12aecf2808} [0 1 2 6 7 99 443 910 971 1128 1651 1800 2968]"
	if got != want {
		t.Fatalf("item and sequence changed:\n got %s\nwant %s", got, want)
	}
	// Indices strictly increase and are spread like 1/(1+i/2): about
	// 2·ln(n) of them below n.
	total := 0
	rng := rand.New(rand.NewPCG(7, 8))
	for range 1000 {
		m := mapping{prng: rng.Uint64()}
		prev := uint64(0)
		for i := m.next(); i < 1<<16; i = m.next() {
			if i <= prev {
				t.Fatalf("index %d after %d", i, prev)
			}
			prev = i
			total++
		}
	}
	if avg := float64(total) / 1000; avg < 15 || avg > 30 {
		t.Fatalf("%.1f indices below 2^16 per item, want about 2·ln(2^15) ≈ 21", avg)
	}
}

func TestCellsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	cells := Cells([]Item{randItem(rng), randItem(rng), randItem(rng)}, 40)
	cells[5].Count = -1 << 40
	b := AppendCells(nil, cells)
	got, err := ParseCells(b, 40)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, cells) {
		t.Fatal("cells changed in a round trip")
	}
	if _, err := ParseCells(b, 39); !errors.Is(err, ErrMalformed) {
		t.Fatalf("over the limit: err = %v", err)
	}
	if _, err := ParseCells(b[:len(b)-1], 40); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: err = %v", err)
	}
}

func TestDecoderRefusesInconsistentCells(t *testing.T) {
	// The same pure cell twice, at indices an item does not map to both
	// of, yields the item twice.
	it := ItemOf([]byte("x"), 1, 1, false)
	c := Cell{Sum: it, Check: it.hash(), Count: 1}
	var dec Decoder
	err := dec.Add([]Cell{c, {}, {}, {}, {}, {}, {}, {}, c, c, c, c, c, c, c, c})
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("err = %v, want ErrInconsistent", err)
	}
	if dec.Done() {
		t.Fatal("an inconsistent decoder reports done")
	}
}

func FuzzDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(11, 12))
	a := Cells([]Item{randItem(rng), randItem(rng)}, 16)
	f.Add(AppendCells(nil, a), uint8(4))
	f.Add(AppendCells(nil, Cells(nil, 3)), uint8(1))
	f.Add([]byte{1, 2, 3}, uint8(0))
	f.Add(binary.AppendVarint(make([]byte, CellWireSize), 1), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, split uint8) {
		cells, err := ParseCells(b, 1<<12)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if !slices.Equal(cells, mustParse(t, AppendCells(nil, cells))) {
			t.Fatal("re-encoding changed the cells")
		}
		// Feeding the cells in two parts must neither panic nor loop.
		var dec Decoder
		k := min(int(split), len(cells))
		_ = dec.Add(cells[:k])
		_ = dec.Add(cells[k:])
		if dec.Done() && len(cells) > 0 && !cells[0].IsZero() && len(dec.Remote())+len(dec.Local()) == 0 {
			t.Fatal("done with a non-empty first cell and nothing decoded")
		}
	})
}

func mustParse(t *testing.T, b []byte) []Cell {
	c, err := ParseCells(b, 1<<12)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func BenchmarkAdd(b *testing.B) {
	d := New(1 << 16)
	rng := rand.New(rand.NewPCG(1, 1))
	items := make([]Item, 1024)
	for i := range items {
		items[i] = randItem(rng)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Add(items[i%len(items)])
	}
}

// TestViewKeepsItsInstant checks that a View reads the cells as they were
// when it was taken, whatever changes after, and that views taken before
// and after a change each see their own instant.
func TestViewKeepsItsInstant(t *testing.T) {
	d := New(64)
	d.Add(Item{KeyHash: 1, HLC: 1, Tag: 1})
	before := d.Snapshot()
	v1 := d.View()
	v1b := d.View()
	if got := v1.Cells(0, 64); !slices.Equal(got, before) {
		t.Fatal("a fresh view differs from the digest")
	}
	d.Add(Item{KeyHash: 2, HLC: 2, Tag: 2})
	after := d.Snapshot()
	v2 := d.View()
	d.Remove(Item{KeyHash: 1, HLC: 1, Tag: 1})
	d.Reset()
	for _, v := range []*View{v1, v1b} {
		if got := v.Cells(0, 64); !slices.Equal(got, before) {
			t.Error("a view changed with the digest")
		}
	}
	if got := v2.Cells(0, 64); !slices.Equal(got, after) {
		t.Error("the second view does not hold its own instant")
	}
	if got := v2.Cells(60, 100); len(got) != 4 || !slices.Equal(got, after[60:]) {
		t.Errorf("Cells beyond the end: %d cells", len(got))
	}
	if v2.Cells(70, 80) != nil || v2.CopyCells(make([]Cell, 1), -1) != 0 {
		t.Error("reads outside the view returned cells")
	}
}
