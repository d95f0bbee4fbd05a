// Package storetest is a conformance suite for store.Store implementations.
//
// An implementation's tests call Run with a function that opens a fresh,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
//	}
//
// Beyond the letter of the store.Store interface, the suite expects what the
// engine relies on: keys up to store.MaxKeySize (longer ones are refused
// without writing anything), a key may appear several times in one Apply,
// and Scan and ScanMeta callbacks may call other methods of the store.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/digest"
)

// Run runs the conformance suite as subtests of t. open must return a new,
// empty store each time it is called; Run closes every store it opens when
// the subtest that opened it ends. Run the suite with -race: several subtests
// read and write from many goroutines.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Empty", testEmpty},
		{"ApplyGet", testApplyGet},
		{"ApplyResults", testApplyResults},
		{"ApplyDuplicateKeys", testApplyDuplicateKeys},
		{"ApplyKeyTooLong", testApplyKeyTooLong},
		{"Tombstones", testTombstones},
		{"BinaryKeys", testBinaryKeys},
		{"ScanOrder", testScanOrder},
		{"ScanPrefixStart", testScanPrefixStart},
		{"ScanEarlyStop", testScanEarlyStop},
		{"ScanReentrant", testScanReentrant},
		{"ScanLarge", testScanLarge},
		{"Remove", testRemove},
		{"Meta", testMeta},
		{"MetaScan", testMetaScan},
		{"NamespacesApart", testNamespacesApart},
		{"NoAliasing", testNoAliasing},
		{"Sync", testSync},
		{"ConcurrentReadsDuringWrites", testConcurrent},
		{"Closed", testClosed},
		{"Digest", testDigest},
		{"GetByHash", testGetByHash},
		{"ScanTombstones", testScanTombstones},
		{"Signatures", testSignatures},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// Equal reports whether a and b are the same record: same key, value,
// version and tombstone flag. A nil and an empty value are alike.
func Equal(a, b store.Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.Version == b.Version && a.Tombstone == b.Tombstone && bytes.Equal(a.Sig, b.Sig)
}

// Format renders r for test failure messages.
func Format(r store.Record) string {
	if r.Tombstone {
		return fmt.Sprintf("{%q tombstone %v value %q}", r.Key, r.Version, r.Value)
	}
	return fmt.Sprintf("{%q %q %v}", r.Key, r.Value, r.Version)
}

// rec builds a record.
func rec(key, value string, hlc, node uint64) store.Record {
	r := store.Record{Key: []byte(key), Version: store.Version{HLC: hlc, Node: node}}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

// tomb builds a tombstone.
func tomb(key string, hlc, node uint64) store.Record {
	return store.Record{Key: []byte(key), Version: store.Version{HLC: hlc, Node: node}, Tombstone: true}
}

func apply(t *testing.T, s store.Store, recs ...store.Record) []bool {
	t.Helper()
	changed, err := s.Apply(recs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(changed) != len(recs) {
		t.Fatalf("Apply returned %d results for %d records", len(changed), len(recs))
	}
	return changed
}

func mustGet(t *testing.T, s store.Store, key string) (store.Record, bool) {
	t.Helper()
	r, ok, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return r, ok
}

func wantRecord(t *testing.T, s store.Store, want store.Record) {
	t.Helper()
	got, ok := mustGet(t, s, string(want.Key))
	if !ok {
		t.Fatalf("Get(%q): not found, want %s", want.Key, Format(want))
	}
	if !Equal(got, want) {
		t.Fatalf("Get(%q) = %s, want %s", want.Key, Format(got), Format(want))
	}
}

func wantMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	if got, ok := mustGet(t, s, key); ok {
		t.Fatalf("Get(%q) = %s, want not found", key, Format(got))
	}
}

func scan(t *testing.T, s store.Store, prefix, start string) []store.Record {
	t.Helper()
	var out []store.Record
	err := s.Scan([]byte(prefix), bytesOrNil(start), func(r store.Record) bool {
		out = append(out, r)
		return true
	})
	if err != nil {
		t.Fatalf("Scan(%q, %q): %v", prefix, start, err)
	}
	return out
}

func scanKeys(t *testing.T, s store.Store, prefix, start string) []string {
	t.Helper()
	var keys []string
	for _, r := range scan(t, s, prefix, start) {
		keys = append(keys, string(r.Key))
	}
	return keys
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func testEmpty(t *testing.T, s store.Store) {
	wantMissing(t, s, "a")
	if got := scan(t, s, "", ""); len(got) != 0 {
		t.Fatalf("Scan of empty store returned %d records", len(got))
	}
	if v, ok, err := s.GetMeta([]byte("a")); err != nil || ok || v != nil {
		t.Fatalf("GetMeta on empty store = %q, %v, %v; want nil, false, nil", v, ok, err)
	}
	n := 0
	if err := s.ScanMeta(nil, func(k, v []byte) bool { n++; return true }); err != nil || n != 0 {
		t.Fatalf("ScanMeta on empty store: %d entries, err %v", n, err)
	}
	if err := s.Remove([]byte("a"), store.Version{HLC: 1, Node: 1}); err != nil {
		t.Fatalf("Remove of missing key: %v", err)
	}
	if changed, err := s.Apply(nil); err != nil || len(changed) != 0 {
		t.Fatalf("Apply(nil) = %v, %v; want empty, nil", changed, err)
	}
}

// testSignatures checks that a record's 64-byte signature is kept with it,
// through Get, Scan and GetByHash, value or tombstone, and that records
// without one still read back without one.
func testSignatures(t *testing.T, s store.Store) {
	sig := func(b byte) []byte { return bytes.Repeat([]byte{b}, 64) }
	a := rec("a", "alpha", 10, 1)
	a.Sig = sig(1)
	b := tomb("b", 11, 2)
	b.Sig = sig(2)
	c := rec("c", "gamma", 12, 3)
	apply(t, s, a, b, c)
	for _, want := range []store.Record{a, b, c} {
		got, ok, err := s.Get(want.Key)
		if err != nil || !ok || !Equal(got, want) {
			t.Fatalf("Get(%q) = %s, %v, %v; want %s with signature %x", want.Key, Format(got), ok, err, Format(want), want.Sig)
		}
		byHash, err := s.GetByHash(digest.KeyHash(want.Key))
		if err != nil || len(byHash) != 1 || !Equal(byHash[0], want) {
			t.Fatalf("GetByHash(%q) = %v, %v", want.Key, byHash, err)
		}
	}
	if got := scan(t, s, "", ""); len(got) != 3 || !Equal(got[0], a) || !Equal(got[1], b) || !Equal(got[2], c) {
		t.Fatalf("Scan lost signatures: %v", got)
	}
	// A newer version replaces the signature with its own.
	a2 := rec("a", "alpha2", 20, 1)
	a2.Sig = sig(3)
	apply(t, s, a2)
	if got, _, _ := s.Get([]byte("a")); !Equal(got, a2) {
		t.Fatalf("Get(a) after a newer version = %x, want signature %x", got.Sig, a2.Sig)
	}
}

func testApplyGet(t *testing.T, s store.Store) {
	a := rec("a", "alpha", 10, 1)
	b := rec("b", "beta", 11, 2)
	noValue := rec("c", "", 13, 1)
	if got := apply(t, s, a, b, noValue); !slices.Equal(got, []bool{true, true, true}) {
		t.Fatalf("Apply of new records = %v, want all true", got)
	}
	for _, r := range []store.Record{a, b, noValue} {
		wantRecord(t, s, r)
	}
	wantMissing(t, s, "d")
	wantMissing(t, s, "aa")
}

func testApplyResults(t *testing.T, s store.Store) {
	cur := rec("k", "v5", 5, 2)
	apply(t, s, cur)

	steps := []struct {
		name    string
		r       store.Record
		changed bool
	}{
		{"older hlc loses", rec("k", "old", 4, 9), false},
		{"older node at same hlc loses", rec("k", "old", 5, 1), false},
		{"identical is not a change", rec("k", "v5", 5, 2), false},
		{"same version, smaller value loses", rec("k", "v0", 5, 2), false},
		{"same version, larger value wins", rec("k", "v9", 5, 2), true},
		{"same version, tombstone beats value", tomb("k", 5, 2), true},
		{"same version, value loses to tombstone", rec("k", "zzz", 5, 2), false},
		{"identical tombstone is not a change", tomb("k", 5, 2), false},
		{"newer node at same hlc wins", rec("k", "n3", 5, 3), true},
		{"newer hlc wins", rec("k", "v6", 6, 1), true},
		{"older tombstone loses", tomb("k", 5, 9), false},
		{"newer tombstone wins", tomb("k", 7, 1), true},
		{"value newer than tombstone wins", rec("k", "back", 8, 1), true},
	}
	for _, st := range steps {
		want, _ := mustGet(t, s, "k")
		if st.changed {
			want = st.r
		}
		got := apply(t, s, st.r)
		if got[0] != st.changed {
			t.Errorf("%s: Apply(%s) changed = %v, want %v", st.name, Format(st.r), got[0], st.changed)
		}
		if r, _ := mustGet(t, s, "k"); !Equal(r, want) {
			t.Fatalf("%s: after Apply(%s), Get = %s, want %s", st.name, Format(st.r), Format(r), Format(want))
		}
	}
}

func testApplyDuplicateKeys(t *testing.T, s store.Store) {
	got := apply(t, s,
		rec("k", "v2", 2, 1),
		rec("k", "v1", 1, 1),
		rec("k", "v2", 2, 1),
		rec("j", "j1", 1, 1),
		rec("k", "v3", 3, 1),
		tomb("k", 3, 1),
		rec("j", "j1", 1, 1),
	)
	if want := []bool{true, false, false, true, true, true, false}; !slices.Equal(got, want) {
		t.Fatalf("Apply with repeated keys = %v, want %v", got, want)
	}
	wantRecord(t, s, tomb("k", 3, 1))
	wantRecord(t, s, rec("j", "j1", 1, 1))
}

func testApplyKeyTooLong(t *testing.T, s store.Store) {
	longest := bytes.Repeat([]byte{'x'}, store.MaxKeySize)
	if got := apply(t, s, store.Record{Key: longest, Value: []byte("v"), Version: store.Version{HLC: 1, Node: 1}}); !got[0] {
		t.Fatal("Apply of a key of exactly MaxKeySize bytes did not change the store")
	}
	long := append(bytes.Clone(longest), 'y')
	_, err := s.Apply([]store.Record{
		rec("ok", "v", 1, 1),
		{Key: long, Value: []byte("v"), Version: store.Version{HLC: 1, Node: 1}},
	})
	if err == nil {
		t.Fatal("Apply of a key longer than MaxKeySize succeeded")
	}
	wantMissing(t, s, "ok")
}

func testTombstones(t *testing.T, s store.Store) {
	apply(t, s, rec("a", "1", 1, 1), rec("b", "2", 1, 1), rec("c", "3", 1, 1))
	if got := apply(t, s, tomb("b", 2, 1)); !got[0] {
		t.Fatal("tombstone newer than the value did not change the store")
	}
	wantRecord(t, s, tomb("b", 2, 1))
	got := scan(t, s, "", "")
	if len(got) != 3 || !Equal(got[1], tomb("b", 2, 1)) {
		t.Fatalf("Scan = %v, want a, tombstone b, c", got)
	}
	// A tombstone for a key never seen is stored too.
	if got := apply(t, s, tomb("z", 1, 1)); !got[0] {
		t.Fatal("tombstone for an unknown key did not change the store")
	}
	wantRecord(t, s, tomb("z", 1, 1))
}

func testBinaryKeys(t *testing.T, s store.Store) {
	keys := []string{"\x00", "\x00\x00", "\x00\xff", "\x01", "a\x00b", "\xfe", "\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff"}
	perm := rand.New(rand.NewPCG(1, 2)).Perm(len(keys))
	for i, p := range perm {
		apply(t, s, rec(keys[p], fmt.Sprint(p), uint64(i+1), 1))
	}
	for _, c := range [][2]string{
		{"", ""}, {"\xff", ""}, {"\xff\xff", ""}, {"\xff\xff\xff", ""}, {"\xff\xff\xff\xff", ""},
		{"\x00", "\x00\x01"}, {"\x00", "\x00"}, {"", "\xff\x00"}, {"\xff", "\xff\xff\xff\x00"}, {"a", ""},
	} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, c[0]) && k >= c[1] {
				want = append(want, k)
			}
		}
		if got := scanKeys(t, s, c[0], c[1]); !slices.Equal(got, want) {
			t.Errorf("Scan(%q, %q) = %q, want %q", c[0], c[1], got, want)
		}
	}
}

func testScanOrder(t *testing.T, s store.Store) {
	rng := rand.New(rand.NewPCG(3, 4))
	want := make([]string, 0, 500)
	seen := map[string]bool{}
	for len(want) < 500 {
		k := make([]byte, 1+rng.IntN(6))
		for i := range k {
			k[i] = "ab\x00\xffz"[rng.IntN(5)]
		}
		if !seen[string(k)] {
			seen[string(k)] = true
			want = append(want, string(k))
		}
	}
	for i := 0; i < len(want); i += 37 {
		var batch []store.Record
		for _, k := range want[i:min(i+37, len(want))] {
			batch = append(batch, rec(k, "v"+k, 1, 1))
		}
		apply(t, s, batch...)
	}
	sort.Strings(want)
	got := scan(t, s, "", "")
	if len(got) != len(want) {
		t.Fatalf("Scan returned %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if string(r.Key) != want[i] || string(r.Value) != "v"+want[i] {
			t.Fatalf("Scan record %d = %s, want key %q", i, Format(r), want[i])
		}
	}
	// Every start key gives the matching suffix of the order.
	for i := 0; i < len(want); i += 50 {
		if got := scanKeys(t, s, "", want[i]); !slices.Equal(got, want[i:]) {
			t.Fatalf("Scan from %q returned %d keys, want %d", want[i], len(got), len(want)-i)
		}
	}
}

func testScanPrefixStart(t *testing.T, s store.Store) {
	for _, k := range []string{"a", "b", "b/1", "b/2", "b/3", "b0", "ba", "c/1", "c/2"} {
		apply(t, s, rec(k, "v", 1, 1))
	}
	cases := []struct {
		prefix, start string
		want          []string
	}{
		{"", "", []string{"a", "b", "b/1", "b/2", "b/3", "b0", "ba", "c/1", "c/2"}},
		{"b/", "", []string{"b/1", "b/2", "b/3"}},
		{"b", "", []string{"b", "b/1", "b/2", "b/3", "b0", "ba"}},
		{"b/", "a", []string{"b/1", "b/2", "b/3"}},     // start before prefix
		{"b/", "b/2", []string{"b/2", "b/3"}},          // start is inclusive
		{"b/", "b/15", []string{"b/2", "b/3"}},         // start between keys
		{"b/", "b/4", nil},                             // start after all prefixed keys
		{"b/", "c", nil},                               // start beyond prefix
		{"c/", "", []string{"c/1", "c/2"}},             // last keys of the store
		{"d", "", nil},                                 // prefix after every key
		{"", "b0", []string{"b0", "ba", "c/1", "c/2"}}, // no prefix, start only
		{"", "zzz", nil},
		{"b/1", "", []string{"b/1"}}, // prefix equal to a key
	}
	for _, c := range cases {
		if got := scanKeys(t, s, c.prefix, c.start); !slices.Equal(got, c.want) {
			t.Errorf("Scan(%q, %q) = %q, want %q", c.prefix, c.start, got, c.want)
		}
	}
}

func testScanEarlyStop(t *testing.T, s store.Store) {
	for i := range 1000 {
		apply(t, s, rec(fmt.Sprintf("k%04d", i), "v", 1, 1))
	}
	for _, stop := range []int{1, 2, 255, 256, 257, 600} {
		n := 0
		err := s.Scan([]byte("k"), nil, func(r store.Record) bool {
			n++
			return n < stop
		})
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if n != stop {
			t.Fatalf("Scan stopping after %d records called fn %d times", stop, n)
		}
	}
	n := 0
	if err := s.ScanMeta(nil, func(k, v []byte) bool { n++; return false }); err != nil || n != 0 {
		t.Fatalf("ScanMeta on empty meta: %d calls, err %v", n, err)
	}
}

func testScanReentrant(t *testing.T, s store.Store) {
	for i := range 600 {
		apply(t, s, rec(fmt.Sprintf("k%04d", i), "v", 1, 1))
	}
	n := 0
	err := s.Scan([]byte("k"), nil, func(r store.Record) bool {
		n++
		if _, _, err := s.Get(r.Key); err != nil {
			t.Errorf("Get inside Scan: %v", err)
			return false
		}
		// Writing from inside the callback must not deadlock; records
		// added behind the cursor are not visited.
		up := r
		up.Version.HLC++
		if _, err := s.Apply([]store.Record{up, rec("a"+string(r.Key), "x", 1, 1)}); err != nil {
			t.Errorf("Apply inside Scan: %v", err)
			return false
		}
		if err := s.SetMeta(r.Key, []byte("seen")); err != nil {
			t.Errorf("SetMeta inside Scan: %v", err)
			return false
		}
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if n != 600 {
		t.Fatalf("Scan visited %d records, want 600", n)
	}
	n = 0
	err = s.ScanMeta([]byte("k"), func(k, v []byte) bool {
		n++
		if err := s.SetMeta(k, nil); err != nil {
			t.Errorf("SetMeta inside ScanMeta: %v", err)
			return false
		}
		return true
	})
	if err != nil || n != 600 {
		t.Fatalf("ScanMeta visited %d entries (err %v), want 600", n, err)
	}
}

func testScanLarge(t *testing.T, s store.Store) {
	// Values big enough that a scan crosses any internal chunking by bytes
	// as well as by count.
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for i := range 100 {
		r := rec(fmt.Sprintf("big%03d", i), "", 1, 1)
		r.Value = append(bytes.Clone(big), byte(i))
		apply(t, s, r)
	}
	got := scan(t, s, "big", "big010")
	if len(got) != 90 {
		t.Fatalf("Scan returned %d records, want 90", len(got))
	}
	for i, r := range got {
		if want := fmt.Sprintf("big%03d", i+10); string(r.Key) != want || len(r.Value) != len(big)+1 || r.Value[len(big)] != byte(i+10) {
			t.Fatalf("record %d: key %q, %d-byte value; want %q", i, r.Key, len(r.Value), want)
		}
	}
}

func testRemove(t *testing.T, s store.Store) {
	apply(t, s, tomb("a", 5, 2), rec("b", "x", 5, 2))
	if err := s.Remove([]byte("a"), store.Version{HLC: 5, Node: 1}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantRecord(t, s, tomb("a", 5, 2))
	if err := s.Remove([]byte("a"), store.Version{HLC: 4, Node: 2}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantRecord(t, s, tomb("a", 5, 2))
	// A newer write landed after the tombstone was chosen for collection.
	apply(t, s, rec("a", "new", 6, 1))
	if err := s.Remove([]byte("a"), store.Version{HLC: 5, Node: 2}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantRecord(t, s, rec("a", "new", 6, 1))
	if err := s.Remove([]byte("a"), store.Version{HLC: 6, Node: 1}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantMissing(t, s, "a")
	if got := scanKeys(t, s, "", ""); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("Scan after Remove = %q, want [b]", got)
	}
	// Removing again, or a key never held, is not an error.
	if err := s.Remove([]byte("a"), store.Version{HLC: 6, Node: 1}); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	// A removed key accepts any write again, even an old one.
	if got := apply(t, s, rec("a", "old", 1, 1)); !got[0] {
		t.Fatal("Apply after Remove did not change the store")
	}
	wantRecord(t, s, rec("a", "old", 1, 1))
}

func testMeta(t *testing.T, s store.Store) {
	get := func(k string) ([]byte, bool) {
		t.Helper()
		v, ok, err := s.GetMeta([]byte(k))
		if err != nil {
			t.Fatalf("GetMeta(%q): %v", k, err)
		}
		return v, ok
	}
	set := func(k string, v []byte) {
		t.Helper()
		if err := s.SetMeta([]byte(k), v); err != nil {
			t.Fatalf("SetMeta(%q): %v", k, err)
		}
	}
	set("node", []byte("id-1"))
	if v, ok := get("node"); !ok || string(v) != "id-1" {
		t.Fatalf("GetMeta(node) = %q, %v", v, ok)
	}
	set("node", []byte("id-2"))
	if v, ok := get("node"); !ok || string(v) != "id-2" {
		t.Fatalf("GetMeta(node) after overwrite = %q, %v", v, ok)
	}
	set("empty", []byte{})
	if v, ok := get("empty"); !ok || len(v) != 0 {
		t.Fatalf("GetMeta(empty) = %q, %v; want empty, true", v, ok)
	}
	set("node", nil)
	if v, ok := get("node"); ok {
		t.Fatalf("GetMeta(node) after delete = %q, want not found", v)
	}
	set("never", nil) // deleting a missing key is fine
	if _, ok := get("never"); ok {
		t.Fatal("GetMeta(never) found an entry")
	}
}

func testMetaScan(t *testing.T, s store.Store) {
	keys := []string{"clock", "out/2/a", "out/2/b", "out/10/a", "out/1/z", "out/1", "outx", "\xff\xff"}
	for i, k := range keys {
		if err := s.SetMeta([]byte(k), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(prefix string, limit int) []string {
		t.Helper()
		var out []string
		err := s.ScanMeta(bytesOrNil(prefix), func(k, v []byte) bool {
			i := slices.Index(keys, string(k))
			if i < 0 || string(v) != fmt.Sprint(i) {
				t.Errorf("ScanMeta gave %q=%q, not a stored entry", k, v)
			}
			out = append(out, string(k))
			return len(out) < limit
		})
		if err != nil {
			t.Fatalf("ScanMeta(%q): %v", prefix, err)
		}
		return out
	}
	all := slices.Clone(keys)
	sort.Strings(all)
	if got := collect("", 100); !slices.Equal(got, all) {
		t.Fatalf("ScanMeta all = %q, want %q", got, all)
	}
	if got, want := collect("out/", 100), []string{"out/1", "out/1/z", "out/10/a", "out/2/a", "out/2/b"}; !slices.Equal(got, want) {
		t.Fatalf("ScanMeta(out/) = %q, want %q", got, want)
	}
	if got, want := collect("out/", 2), []string{"out/1", "out/1/z"}; !slices.Equal(got, want) {
		t.Fatalf("ScanMeta(out/) stopping after 2 = %q, want %q", got, want)
	}
	if got, want := collect("\xff", 100), []string{"\xff\xff"}; !slices.Equal(got, want) {
		t.Fatalf("ScanMeta(\\xff) = %q, want %q", got, want)
	}
	if err := s.SetMeta([]byte("out/2/a"), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := collect("out/2/", 100), []string{"out/2/b"}; !slices.Equal(got, want) {
		t.Fatalf("ScanMeta(out/2/) after delete = %q, want %q", got, want)
	}
}

func testNamespacesApart(t *testing.T, s store.Store) {
	apply(t, s, rec("shared", "record", 1, 1))
	if err := s.SetMeta([]byte("shared"), []byte("meta")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta([]byte("metaonly"), []byte("meta")); err != nil {
		t.Fatal(err)
	}
	wantRecord(t, s, rec("shared", "record", 1, 1))
	wantMissing(t, s, "metaonly")
	if v, ok, err := s.GetMeta([]byte("shared")); err != nil || !ok || string(v) != "meta" {
		t.Fatalf("GetMeta(shared) = %q, %v, %v", v, ok, err)
	}
	if got := scanKeys(t, s, "", ""); !slices.Equal(got, []string{"shared"}) {
		t.Fatalf("Scan = %q, want only the record", got)
	}
	var metaKeys []string
	if err := s.ScanMeta(nil, func(k, v []byte) bool { metaKeys = append(metaKeys, string(k)); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(metaKeys, []string{"metaonly", "shared"}) {
		t.Fatalf("ScanMeta keys = %q", metaKeys)
	}
	// Removing the record leaves the metadata entry of the same key.
	if err := s.Remove([]byte("shared"), store.Version{HLC: 1, Node: 1}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetMeta([]byte("shared")); !ok {
		t.Fatal("Remove of a record deleted the metadata entry of the same key")
	}
	if err := s.SetMeta([]byte("metaonly"), nil); err != nil {
		t.Fatal(err)
	}
	apply(t, s, rec("shared", "again", 2, 1))
	wantRecord(t, s, rec("shared", "again", 2, 1))
}

func testNoAliasing(t *testing.T, s store.Store) {
	key, val := []byte("key"), []byte("value")
	in := []store.Record{{Key: key, Value: val, Version: store.Version{HLC: 1, Node: 1}}}
	apply(t, s, in...)
	key[0], val[0] = 'X', 'X'
	in[0].Key = []byte("other")
	wantRecord(t, s, rec("key", "value", 1, 1))

	got, _ := mustGet(t, s, "key")
	got.Key[0], got.Value[0] = 'Y', 'Y'
	wantRecord(t, s, rec("key", "value", 1, 1))

	var scanned []store.Record
	if err := s.Scan(nil, nil, func(r store.Record) bool { scanned = append(scanned, r); return true }); err != nil {
		t.Fatal(err)
	}
	scanned[0].Key[0], scanned[0].Value[0] = 'Z', 'Z'
	wantRecord(t, s, rec("key", "value", 1, 1))

	// Records passed to Scan's callback stay valid after it returns.
	for i := range 300 {
		apply(t, s, rec(fmt.Sprintf("s%03d", i), fmt.Sprintf("v%03d", i), 1, 1))
	}
	scanned = scanned[:0]
	if err := s.Scan([]byte("s"), nil, func(r store.Record) bool { scanned = append(scanned, r); return true }); err != nil {
		t.Fatal(err)
	}
	for i, r := range scanned {
		if string(r.Key) != fmt.Sprintf("s%03d", i) || string(r.Value) != fmt.Sprintf("v%03d", i) {
			t.Fatalf("kept Scan record %d = %s", i, Format(r))
		}
	}

	mk, mv := []byte("mk"), []byte("mv")
	if err := s.SetMeta(mk, mv); err != nil {
		t.Fatal(err)
	}
	mk[0], mv[0] = 'X', 'X'
	v, ok, err := s.GetMeta([]byte("mk"))
	if err != nil || !ok || string(v) != "mv" {
		t.Fatalf("GetMeta(mk) = %q, %v, %v; want mv", v, ok, err)
	}
	v[0] = 'Y'
	var keys, vals [][]byte
	if err := s.ScanMeta(nil, func(k, v []byte) bool { keys, vals = append(keys, k), append(vals, v); return true }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || string(keys[0]) != "mk" || string(vals[0]) != "mv" {
		t.Fatalf("ScanMeta = %q %q, want mk=mv", keys, vals)
	}
	keys[0][0], vals[0][0] = 'Z', 'Z'
	if v, _, _ := s.GetMeta([]byte("mk")); string(v) != "mv" {
		t.Fatalf("GetMeta(mk) after mutating ScanMeta output = %q", v)
	}
}

func testSync(t *testing.T, s store.Store) {
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync of empty store: %v", err)
	}
	apply(t, s, rec("a", "1", 1, 1))
	if err := s.SetMeta([]byte("m"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove([]byte("a"), store.Version{HLC: 1, Node: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	wantMissing(t, s, "a")
}

// testConcurrent has one writer (as the engine's event loop is the only
// writer) raise the versions of a set of keys while readers Get and Scan.
// Each value names its version, so readers can check that every record they
// see is whole and that versions they observe never go backwards.
func testConcurrent(t *testing.T, s store.Store) {
	const (
		keys    = 64
		rounds  = 150
		readers = 4
	)
	key := func(i int) string { return fmt.Sprintf("c%03d", i) }
	value := func(v store.Version) string { return fmt.Sprintf("value@%d.%d", v.HLC, v.Node) }
	check := func(r store.Record) error {
		if want := value(r.Version); !r.Tombstone && string(r.Value) != want {
			return fmt.Errorf("record %s: value does not match version (want %q)", Format(r), want)
		}
		return nil
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, readers*2+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		rng := rand.New(rand.NewPCG(5, 6))
		for round := 1; round <= rounds; round++ {
			var batch []store.Record
			for i := range keys {
				if rng.IntN(3) == 0 {
					continue
				}
				v := store.Version{HLC: uint64(round), Node: uint64(rng.IntN(3) + 1)}
				r := store.Record{Key: []byte(key(i)), Version: v, Tombstone: rng.IntN(10) == 0}
				if !r.Tombstone {
					r.Value = []byte(value(v))
				}
				batch = append(batch, r)
			}
			if _, err := s.Apply(batch); err != nil {
				errs <- fmt.Errorf("writer: apply: %w", err)
				return
			}
			if round%10 == 0 {
				if err := s.Sync(); err != nil {
					errs <- fmt.Errorf("writer: sync: %w", err)
					return
				}
				if err := s.SetMeta([]byte("round"), []byte(fmt.Sprint(round))); err != nil {
					errs <- fmt.Errorf("writer: set meta: %w", err)
					return
				}
			}
		}
	}()
	for g := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			last := make([]store.Version, keys)
			for {
				select {
				case <-done:
					return
				default:
				}
				i := rng.IntN(keys)
				r, ok, err := s.Get([]byte(key(i)))
				if err != nil {
					errs <- fmt.Errorf("reader: get: %w", err)
					return
				}
				if !ok {
					continue
				}
				if err := check(r); err != nil {
					errs <- err
					return
				}
				if r.Version.Compare(last[i]) < 0 {
					errs <- fmt.Errorf("reader: get(%s) went back from version %v to %v", key(i), last[i], r.Version)
					return
				}
				last[i] = r.Version
				if rng.IntN(16) == 0 {
					prev := ""
					var bad error
					err := s.Scan([]byte("c"), nil, func(r store.Record) bool {
						if string(r.Key) <= prev {
							bad = fmt.Errorf("out of order: %q after %q", r.Key, prev)
							return false
						}
						prev = string(r.Key)
						bad = check(r)
						return bad == nil
					})
					if err == nil {
						err = bad
					}
					if err != nil {
						errs <- fmt.Errorf("reader: scan: %w", err)
						return
					}
					if _, _, err := s.GetMeta([]byte("round")); err != nil {
						errs <- fmt.Errorf("reader: get meta: %w", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testClosed(t *testing.T, s store.Store) {
	apply(t, s, rec("a", "1", 1, 1))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", op, err)
		}
	}
	_, _, err := s.Get([]byte("a"))
	check("Get", err)
	_, err = s.Apply([]store.Record{rec("b", "2", 1, 1)})
	check("Apply", err)
	check("Scan", s.Scan(nil, nil, func(store.Record) bool { return true }))
	check("Remove", s.Remove([]byte("a"), store.Version{HLC: 1, Node: 1}))
	_, err = s.GetByHash(digest.KeyHash([]byte("a")))
	check("GetByHash", err)
	_, _, err = s.GetMeta([]byte("m"))
	check("GetMeta", err)
	check("SetMeta", s.SetMeta([]byte("m"), []byte("v")))
	check("ScanMeta", s.ScanMeta(nil, func(k, v []byte) bool { return true }))
	check("Sync", s.Sync())
	check("Close", s.Close())
}

// CheckDigest fails t unless s's digest is exactly the digest of the
// records s holds, computed from scratch, and every record is found by its
// key hash: the invariant Apply and Remove maintain in place.
func CheckDigest(t testing.TB, s store.Store) {
	t.Helper()
	var items []digest.Item
	err := s.Scan(nil, nil, func(r store.Record) bool {
		items = append(items, r.Item())
		got, err := s.GetByHash(digest.KeyHash(r.Key))
		if err != nil {
			t.Fatalf("GetByHash(%q): %v", r.Key, err)
		}
		if !slices.ContainsFunc(got, func(g store.Record) bool { return Equal(g, r) }) {
			t.Fatalf("GetByHash(hash of %q) = %d records, none is %s", r.Key, len(got), Format(r))
		}
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	d := s.Digest()
	if d.Items() != int64(len(items)) {
		t.Fatalf("digest holds %d items, store %d records", d.Items(), len(items))
	}
	want := digest.Cells(items, d.Len())
	if got := d.Snapshot(); !slices.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("digest cell %d = %+v, want %+v (computed from the %d records)", i, got[i], want[i], len(items))
			}
		}
	}
}

func testDigest(t *testing.T, s store.Store) {
	CheckDigest(t, s)
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 20 {
		var recs []store.Record
		for range 50 {
			k := fmt.Sprintf("k%03d", rng.IntN(200))
			v := store.Version{HLC: uint64(rng.IntN(1000) + 1), Node: uint64(rng.IntN(3) + 1)}
			if rng.IntN(4) == 0 {
				recs = append(recs, store.Record{Key: []byte(k), Version: v, Tombstone: true})
			} else {
				recs = append(recs, store.Record{Key: []byte(k), Value: []byte(fmt.Sprint(rng.Uint32())), Version: v})
			}
		}
		apply(t, s, recs...)
		// Remove some, with the right version and with a stale one.
		for _, r := range scan(t, s, "", "")[:10] {
			v := r.Version
			if rng.IntN(2) == 0 {
				v.HLC++
			}
			if err := s.Remove(r.Key, v); err != nil {
				t.Fatalf("Remove: %v", err)
			}
		}
		if round%5 == 4 {
			CheckDigest(t, s)
		}
	}
	if s.Digest().Items() == 0 {
		t.Fatal("nothing left in the store to check")
	}
}

func testGetByHash(t *testing.T, s store.Store) {
	if got, err := s.GetByHash(digest.KeyHash([]byte("none"))); err != nil || len(got) != 0 {
		t.Fatalf("GetByHash of an absent key = %v, %v", got, err)
	}
	apply(t, s, rec("a", "1", 1, 1), tomb("b", 2, 1))
	for _, want := range []store.Record{rec("a", "1", 1, 1), tomb("b", 2, 1)} {
		got, err := s.GetByHash(digest.KeyHash(want.Key))
		if err != nil || len(got) != 1 || !Equal(got[0], want) {
			t.Fatalf("GetByHash(%q) = %v, %v; want [%s]", want.Key, got, err, Format(want))
		}
	}
	if err := s.Remove([]byte("b"), store.Version{HLC: 2, Node: 1}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetByHash(digest.KeyHash([]byte("b"))); err != nil || len(got) != 0 {
		t.Fatalf("GetByHash after Remove = %v, %v", got, err)
	}
}

// CheckTombstones fails t unless ScanTombstones visits exactly the
// tombstones that Scan finds, with the same versions, in key order.
func CheckTombstones(t testing.TB, s store.Store) {
	t.Helper()
	var want, got []store.Record
	if err := s.Scan(nil, nil, func(r store.Record) bool {
		if r.Tombstone {
			want = append(want, r)
		}
		return true
	}); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if err := s.ScanTombstones(nil, func(r store.Record) bool {
		got = append(got, r)
		return true
	}); err != nil {
		t.Fatalf("ScanTombstones: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ScanTombstones visited %d tombstones, Scan finds %d", len(got), len(want))
	}
	for i := range want {
		if !Equal(got[i], want[i]) {
			t.Fatalf("ScanTombstones[%d] = %s, want %s", i, Format(got[i]), Format(want[i]))
		}
	}
}

// testScanTombstones drives random writes, deletes and removals and checks
// after each step that ScanTombstones sees the tombstones Scan sees, no
// more; then its start key and early stop, over more than one chunk.
func testScanTombstones(t *testing.T, s store.Store) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 600 {
		key := fmt.Sprintf("k%02d", rng.IntN(40))
		hlc := uint64(i + 1)
		if rng.IntN(5) == 0 {
			hlc = uint64(rng.IntN(i + 1)) // an old version: may lose
		}
		switch op := rng.IntN(10); {
		case op < 4:
			apply(t, s, rec(key, "v", hlc, 1))
		case op < 8:
			apply(t, s, tomb(key, hlc, 1))
		case op < 9:
			// Two writes to one key in one call.
			apply(t, s, tomb(key, hlc, 1), rec(key, "w", hlc, 2))
		default:
			if r, ok := mustGet(t, s, key); ok {
				if err := s.Remove(r.Key, r.Version); err != nil {
					t.Fatalf("Remove: %v", err)
				}
			}
		}
		CheckTombstones(t, s)
	}
	// More tombstones than one chunk of a scan.
	var recs []store.Record
	for i := range 700 {
		recs = append(recs, tomb(fmt.Sprintf("t%04d", i), 1000, 1))
	}
	apply(t, s, recs...)
	CheckTombstones(t, s)
	var keys []string
	if err := s.ScanTombstones([]byte("t0300"), func(r store.Record) bool {
		keys = append(keys, string(r.Key))
		return len(keys) < 5
	}); err != nil {
		t.Fatalf("ScanTombstones: %v", err)
	}
	if want := []string{"t0300", "t0301", "t0302", "t0303", "t0304"}; !slices.Equal(keys, want) {
		t.Fatalf("ScanTombstones from t0300, 5 of them = %q, want %q", keys, want)
	}
}
