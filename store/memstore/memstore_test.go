package memstore_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
	"github.com/hearsaydb/hearsay/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
}

func TestChangeLog(t *testing.T) {
	storetest.RunChangeLog(t, storetest.ChangeLogOpener{
		Open: func(t *testing.T, l store.ChangeLogLimits) store.Store {
			return memstore.NewWithOptions(memstore.Options{ChangeLog: l})
		},
	})
}

func TestLen(t *testing.T) {
	s := memstore.New()
	for i := range 1000 {
		k := []byte(fmt.Sprintf("k%04d", i%700))
		if _, err := s.Apply([]store.Record{{Key: k, Version: store.Version{HLC: uint64(i + 1), Node: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Len(); n != 700 {
		t.Fatalf("Len = %d, want 700", n)
	}
	if err := s.Remove([]byte("k0000"), store.Version{HLC: 701, Node: 1}); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 699 {
		t.Fatalf("Len after Remove = %d, want 699", n)
	}
	_ = s.Close()
	if n := s.Len(); n != 0 {
		t.Fatalf("Len after Close = %d, want 0", n)
	}
}

// TestRandomOps checks the ordered index against a plain map through many
// random inserts, overwrites and removals, so that chunks split and empty.
func TestRandomOps(t *testing.T) {
	s := memstore.New()
	model := map[string]store.Record{}
	rng := rand.New(rand.NewPCG(11, 12))
	hlc := uint64(0)
	for step := range 40000 {
		k := fmt.Sprintf("%05d", rng.IntN(3000))
		if rng.IntN(3) == 0 {
			if cur, ok := model[k]; ok {
				if err := s.Remove([]byte(k), cur.Version); err != nil {
					t.Fatal(err)
				}
				delete(model, k)
			}
			continue
		}
		hlc++
		r := store.Record{Key: []byte(k), Value: []byte(fmt.Sprint(step)), Version: store.Version{HLC: hlc, Node: 1}}
		if _, err := s.Apply([]store.Record{r}); err != nil {
			t.Fatal(err)
		}
		model[k] = r
	}
	if s.Len() != len(model) {
		t.Fatalf("Len = %d, model has %d", s.Len(), len(model))
	}
	prev, n := "", 0
	err := s.Scan(nil, nil, func(r store.Record) bool {
		if n > 0 && string(r.Key) <= prev {
			t.Fatalf("Scan out of order: %q after %q", r.Key, prev)
		}
		prev = string(r.Key)
		n++
		if m, ok := model[string(r.Key)]; !ok || !storetest.Equal(m, r) {
			t.Fatalf("Scan gave %s, model has %s (%v)", storetest.Format(r), storetest.Format(m), ok)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(model) {
		t.Fatalf("Scan visited %d records, model has %d", n, len(model))
	}
}

func BenchmarkApplyRandom100k(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key-%016x", rng.Uint64()))
	}
	val := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		s := memstore.New()
		for i, k := range keys {
			if _, err := s.Apply([]store.Record{{Key: k, Value: val, Version: store.Version{HLC: uint64(i + 1), Node: 1}}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(keys)*b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkGet(b *testing.B) {
	s := memstore.New()
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key-%08d", i))
		if _, err := s.Apply([]store.Record{{Key: keys[i], Value: make([]byte, 100), Version: store.Version{HLC: 1, Node: 1}}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok, err := s.Get(keys[i%len(keys)]); err != nil || !ok {
			b.Fatal(ok, err)
		}
		i += 7919
	}
}
