package store_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/memstore"
	"github.com/hearsaydb/hearsay/store/storetest"
)

const iterations = 200_000

// randRecord draws a record for key from a deliberately small space, so that
// equal versions with differing content (a faulty peer), equal values,
// tombstones and empty versus nil values all come up often.
func randRecord(rng *rand.Rand, key string) store.Record {
	r := store.Record{
		Key:     []byte(key),
		Version: store.Version{HLC: uint64(rng.IntN(4)), Node: uint64(rng.IntN(3))},
	}
	switch rng.IntN(6) {
	case 0:
		r.Tombstone = true
	case 1:
		r.Tombstone = true
		r.Value = []byte{'z'} // malformed, but must still merge deterministically
	case 2:
		r.Value = []byte{}
	case 3:
		// nil value
	default:
		r.Value = []byte{"ab"[rng.IntN(2)], "ab"[rng.IntN(2)]}[:1+rng.IntN(2)]
	}
	return r
}

func same(a, b store.Record) bool { return storetest.Equal(a, b) }

func TestMergeCommutative(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range iterations {
		a, b := randRecord(rng, "k"), randRecord(rng, "k")
		if ab, ba := store.Merge(a, b), store.Merge(b, a); !same(ab, ba) {
			t.Fatalf("Merge(%s, %s) = %s but Merge(b, a) = %s",
				storetest.Format(a), storetest.Format(b), storetest.Format(ab), storetest.Format(ba))
		}
	}
}

func TestMergeAssociative(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for range iterations {
		a, b, c := randRecord(rng, "k"), randRecord(rng, "k"), randRecord(rng, "k")
		l := store.Merge(store.Merge(a, b), c)
		r := store.Merge(a, store.Merge(b, c))
		if !same(l, r) {
			t.Fatalf("Merge(Merge(%s, %s), %s) = %s but Merge(a, Merge(b, c)) = %s",
				storetest.Format(a), storetest.Format(b), storetest.Format(c), storetest.Format(l), storetest.Format(r))
		}
	}
}

func TestMergeIdempotent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for range iterations {
		a, b := randRecord(rng, "k"), randRecord(rng, "k")
		if aa := store.Merge(a, a); !same(aa, a) {
			t.Fatalf("Merge(a, a) = %s, want a = %s", storetest.Format(aa), storetest.Format(a))
		}
		// Merging a record already merged in changes nothing.
		ab := store.Merge(a, b)
		if again := store.Merge(ab, b); !same(again, ab) {
			t.Fatalf("Merge(Merge(a, b), b) = %s, want %s", storetest.Format(again), storetest.Format(ab))
		}
	}
}

// TestWinsStrictOrder checks that Wins is a strict total order on record
// content: never both ways, and between records that differ exactly one
// wins; and that Merge picks one of its arguments, the newer version.
func TestWinsStrictOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for range iterations {
		a, b := randRecord(rng, "k"), randRecord(rng, "k")
		ab, ba := a.Wins(b), b.Wins(a)
		if ab && ba {
			t.Fatalf("%s and %s each win over the other", storetest.Format(a), storetest.Format(b))
		}
		if !same(a, b) && !ab && !ba {
			t.Fatalf("neither %s nor %s wins, yet they differ", storetest.Format(a), storetest.Format(b))
		}
		m := store.Merge(a, b)
		if !same(m, a) && !same(m, b) {
			t.Fatalf("Merge(%s, %s) = %s, neither argument", storetest.Format(a), storetest.Format(b), storetest.Format(m))
		}
		if c := a.Version.Compare(b.Version); (c > 0 && !same(m, a)) || (c < 0 && !same(m, b)) {
			t.Fatalf("Merge(%s, %s) = %s, not the newer version", storetest.Format(a), storetest.Format(b), storetest.Format(m))
		}
		if a.Version.Compare(b.Version) != -b.Version.Compare(a.Version) {
			t.Fatalf("Compare(%v, %v) is not antisymmetric", a.Version, b.Version)
		}
	}
}

// TestApplyOrderIndependence applies one random set of updates, with
// duplicates, in two random orders and random batchings to two memstores,
// and checks that they end up holding the same records, equal to folding
// Merge over each key's updates.
func TestApplyOrderIndependence(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for trial := range 50 {
		var updates []store.Record
		for range 2000 {
			r := randRecord(rng, fmt.Sprintf("key%02d", rng.IntN(40)))
			updates = append(updates, r)
			if rng.IntN(4) == 0 {
				updates = append(updates, r.Clone()) // an exact duplicate
			}
		}
		want := map[string]store.Record{}
		for _, r := range updates {
			if cur, ok := want[string(r.Key)]; ok {
				want[string(r.Key)] = store.Merge(cur, r)
			} else {
				want[string(r.Key)] = r
			}
		}

		a, b := memstore.New(), memstore.New()
		applyShuffled(t, rng, a, updates)
		applyShuffled(t, rng, b, updates)
		// Re-delivering everything again changes nothing.
		for i := range updates {
			changed, err := b.Apply(updates[i : i+1])
			if err != nil {
				t.Fatal(err)
			}
			if changed[0] {
				t.Fatalf("trial %d: re-applying %s changed the store", trial, storetest.Format(updates[i]))
			}
		}

		got := map[string]store.Record{}
		err := a.Scan(nil, nil, func(r store.Record) bool { got[string(r.Key)] = r; return true })
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = b.Scan(nil, nil, func(r store.Record) bool {
			n++
			if ar, ok := got[string(r.Key)]; !ok || !same(ar, r) {
				t.Errorf("trial %d: key %q: store a holds %s, store b %s", trial, r.Key, storetest.Format(ar), storetest.Format(r))
			}
			if w := want[string(r.Key)]; !same(w, r) {
				t.Errorf("trial %d: key %q: store holds %s, folding Merge gives %s", trial, r.Key, storetest.Format(r), storetest.Format(w))
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != len(got) || n != len(want) {
			t.Fatalf("trial %d: stores hold %d and %d keys, want %d", trial, len(got), n, len(want))
		}
		if t.Failed() {
			return
		}
	}
}

// applyShuffled applies a random permutation of updates to s in batches of
// random size (so keys repeat within a batch as well as across batches), and
// checks each reported change against the record held before.
func applyShuffled(t *testing.T, rng *rand.Rand, s store.Store, updates []store.Record) {
	t.Helper()
	perm := rng.Perm(len(updates))
	for len(perm) > 0 {
		n := min(1+rng.IntN(16), len(perm))
		batch := make([]store.Record, n)
		for i, p := range perm[:n] {
			batch[i] = updates[p]
		}
		perm = perm[n:]
		// Work out what Apply should report from a running fold.
		held := map[string]store.Record{}
		wantChanged := make([]bool, n)
		for i, r := range batch {
			cur, ok := held[string(r.Key)]
			if !ok {
				var err error
				if cur, ok, err = s.Get(r.Key); err != nil {
					t.Fatal(err)
				}
			}
			if !ok || r.Wins(cur) {
				held[string(r.Key)] = r
				wantChanged[i] = true
			}
		}
		changed, err := s.Apply(batch)
		if err != nil {
			t.Fatal(err)
		}
		for i := range batch {
			if changed[i] != wantChanged[i] {
				t.Fatalf("Apply reported changed=%v for %s, want %v", changed[i], storetest.Format(batch[i]), wantChanged[i])
			}
		}
	}
}

// TestVersionString checks the hand-made formatting against fmt's.
func TestVersionString(t *testing.T) {
	for _, v := range []store.Version{{}, {HLC: 1, Node: 1}, {HLC: 0x18d2f3a1b2c0001, Node: 0xfedcba9876543210}, {HLC: ^uint64(0), Node: ^uint64(0)}, {HLC: 0xabc, Node: 0x10}} {
		if got, want := v.String(), fmt.Sprintf("%x@%016x", v.HLC, v.Node); got != want {
			t.Errorf("%#v: %q, want %q", v, got, want)
		}
	}
}
