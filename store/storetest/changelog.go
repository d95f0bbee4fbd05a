package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hearsaydb/hearsay/store"
)

// ChangeLogOpener opens stores for RunChangeLog.
type ChangeLogOpener struct {
	// Open returns a new, empty store whose change log has the given
	// limits.
	Open func(t *testing.T, limits store.ChangeLogLimits) store.Store
	// Reopen closes s (after a Sync) and opens the same store again with
	// the given limits; nil for a store that cannot be reopened (the
	// reopen tests are skipped).
	Reopen func(t *testing.T, s store.Store, limits store.ChangeLogLimits) store.Store
}

// RunChangeLog runs the change log conformance tests (revisions, Changes,
// trimming to the limits, and, when the store can be reopened, revisions
// that survive a reopen) as subtests of t.
func RunChangeLog(t *testing.T, o ChangeLogOpener) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, o ChangeLogOpener)
	}{
		{"Revisions", testRevisions},
		{"TrimByEntries", testTrimByEntries},
		{"TrimByBytes", testTrimByBytes},
		{"NoLog", testNoLog},
		{"TrimWhileReading", testTrimWhileReading},
		{"ReopenKeepsRevisions", testReopenKeepsRevisions},
		{"ReopenTrimsToLowerLimits", testReopenTrims},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, o) })
	}
}

func openLog(t *testing.T, o ChangeLogOpener, l store.ChangeLogLimits) store.Store {
	t.Helper()
	s := o.Open(t, l)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// changes returns every change after rev, or the error of Changes.
func changes(s store.Store, after uint64) ([]store.Record, error) {
	var out []store.Record
	err := s.Changes(after, func(r store.Record) bool {
		out = append(out, r)
		return true
	})
	return out, err
}

func mustChanges(t *testing.T, s store.Store, after uint64) []store.Record {
	t.Helper()
	out, err := changes(s, after)
	if err != nil {
		t.Fatalf("Changes(%d): %v", after, err)
	}
	return out
}

// wantChanges checks that got are the changes want, numbered from first.
func wantChanges(t *testing.T, got []store.Record, first uint64, want ...store.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Revision != first+uint64(i) || !Equal(r, want[i]) {
			t.Fatalf("change %d = %s at revision %d, want %s at %d", i, Format(r), r.Revision, Format(want[i]), first+uint64(i))
		}
	}
}

func testRevisions(t *testing.T, o ChangeLogOpener) {
	s := openLog(t, o, store.ChangeLogLimits{})
	if r := s.Revision(); r != 0 {
		t.Fatalf("Revision of an empty store = %d, want 0", r)
	}
	if got := mustChanges(t, s, 0); len(got) != 0 {
		t.Fatalf("Changes(0) of an empty store: %d changes", len(got))
	}
	a1, b1, a0 := rec("a", "1", 10, 1), rec("b", "1", 10, 1), rec("a", "0", 5, 1)
	recs := []store.Record{a1, b1, a0}
	if _, err := s.Apply(recs); err != nil {
		t.Fatal(err)
	}
	if recs[0].Revision != 1 || recs[1].Revision != 2 || recs[2].Revision != 0 {
		t.Fatalf("Apply set revisions %d %d %d, want 1 2 0 (the last changes nothing)", recs[0].Revision, recs[1].Revision, recs[2].Revision)
	}
	// The same key twice in one Apply: two changes. A tombstone is one too.
	a2, a3, bt := rec("a", "2", 11, 1), rec("a", "3", 12, 1), tomb("b", 11, 1)
	recs = []store.Record{a2, a3, bt, a1}
	if _, err := s.Apply(recs); err != nil {
		t.Fatal(err)
	}
	if recs[0].Revision != 3 || recs[1].Revision != 4 || recs[2].Revision != 5 || recs[3].Revision != 0 {
		t.Fatalf("Apply set revisions %d %d %d %d, want 3 4 5 0", recs[0].Revision, recs[1].Revision, recs[2].Revision, recs[3].Revision)
	}
	// Remove and metadata are not changes.
	if err := s.Remove([]byte("b"), bt.Version); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta([]byte("m"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if r := s.Revision(); r != 5 {
		t.Fatalf("Revision = %d, want 5", r)
	}
	wantChanges(t, mustChanges(t, s, 0), 1, a1, b1, a2, a3, bt)
	wantChanges(t, mustChanges(t, s, 3), 4, a3, bt)
	wantChanges(t, mustChanges(t, s, 5), 6)
	wantChanges(t, mustChanges(t, s, 99), 100)
	// A stored record carries no revision; early stop.
	if r, _ := mustGet(t, s, "a"); r.Revision != 0 {
		t.Fatalf("Get returned revision %d, want 0", r.Revision)
	}
	n := 0
	if err := s.Changes(0, func(store.Record) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Fatalf("Changes stopped after %d calls (err %v), want 2", n, err)
	}
	st := s.ChangeLog()
	if st.Revision != 5 || st.First != 1 || st.Entries != 5 {
		t.Fatalf("ChangeLog = %+v, want revision 5, first 1, 5 entries", st)
	}
	want := store.ChangeSize(a1) + store.ChangeSize(b1) + store.ChangeSize(a2) + store.ChangeSize(a3) + store.ChangeSize(bt)
	if st.Bytes != want {
		t.Fatalf("ChangeLog bytes = %d, want %d", st.Bytes, want)
	}
	// Changes returns copies.
	got := mustChanges(t, s, 0)
	got[0].Value[0] = 'x'
	wantChanges(t, mustChanges(t, s, 0), 1, a1, b1, a2, a3, bt)
}

// applyN applies n changes to distinct keys and returns them.
func applyN(t *testing.T, s store.Store, from, n int, value string) []store.Record {
	t.Helper()
	var recs []store.Record
	for i := from; i < from+n; i++ {
		recs = append(recs, rec(fmt.Sprintf("k%05d", i), value, uint64(i+1), 1))
	}
	if _, err := s.Apply(recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

func wantCompacted(t *testing.T, s store.Store, after uint64) {
	t.Helper()
	if _, err := changes(s, after); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Changes(%d) = %v, want ErrCompacted", after, err)
	}
}

func testTrimByEntries(t *testing.T, o ChangeLogOpener) {
	s := openLog(t, o, store.ChangeLogLimits{Entries: 5})
	var all []store.Record
	for i := range 4 { // one at a time, then three in one Apply
		all = append(all, applyN(t, s, i, 1, "v")...)
	}
	all = append(all, applyN(t, s, 4, 8, "v")...) // more than the log holds
	if st := s.ChangeLog(); st.Revision != 12 || st.First != 8 || st.Entries != 5 {
		t.Fatalf("ChangeLog = %+v, want revision 12, first 8, 5 entries", st)
	}
	wantChanges(t, mustChanges(t, s, 7), 8, all[7:]...)
	wantChanges(t, mustChanges(t, s, 10), 11, all[10:]...)
	wantCompacted(t, s, 6)
	wantCompacted(t, s, 0)

	// Past a limit, the log is trimmed by an eighth at once, never held
	// above the limit nor below seven eighths of it.
	s = openLog(t, o, store.ChangeLogLimits{Entries: 16})
	trims := 0
	for i := range 100 {
		applyN(t, s, i, 1, "v")
		st := s.ChangeLog()
		if st.Entries > 16 || (st.Revision >= 16 && st.Entries < 14) || st.First != st.Revision-uint64(st.Entries)+1 {
			t.Fatalf("after %d changes: ChangeLog = %+v, want 14 to 16 entries ending at the revision", i+1, st)
		}
		if st.Entries == 14 {
			trims++
		}
	}
	// 14 entries after the 14th change, then after each trim: the 17th,
	// 20th, … 98th change (each goes over 16 and trims three).
	if trims != 29 {
		t.Fatalf("the log held 14 entries %d times in 100 changes, want 29", trims)
	}
}

func testTrimByBytes(t *testing.T, o ChangeLogOpener) {
	one := store.ChangeSize(rec("k00000", "0123456789", 1, 1))
	s := openLog(t, o, store.ChangeLogLimits{Bytes: 3*one + one/2})
	all := applyN(t, s, 0, 10, "0123456789")
	if st := s.ChangeLog(); st.Revision != 10 || st.First != 8 || st.Entries != 3 || st.Bytes != 3*one {
		t.Fatalf("ChangeLog = %+v, want revision 10, first 8, 3 entries of %d bytes", st, 3*one)
	}
	wantChanges(t, mustChanges(t, s, 7), 8, all[7:]...)
	wantCompacted(t, s, 6)
	// A change larger than the whole bound is counted and not kept.
	big := rec("big", string(make([]byte, 4*one)), 100, 1)
	apply(t, s, big)
	if st := s.ChangeLog(); st.Revision != 11 || st.Entries != 0 || st.First != 0 || st.Bytes != 0 {
		t.Fatalf("ChangeLog = %+v after a change larger than the bound, want revision 11 and nothing kept", st)
	}
	wantCompacted(t, s, 10)
	wantChanges(t, mustChanges(t, s, 11), 12)
}

func testNoLog(t *testing.T, o ChangeLogOpener) {
	s := openLog(t, o, store.ChangeLogLimits{Entries: -1})
	applyN(t, s, 0, 3, "v")
	if st := s.ChangeLog(); st.Revision != 3 || st.Entries != 0 || st.First != 0 {
		t.Fatalf("ChangeLog = %+v, want revision 3 and no entries", st)
	}
	wantCompacted(t, s, 0)
	wantCompacted(t, s, 2)
	wantChanges(t, mustChanges(t, s, 3), 4)
}

// testTrimWhileReading reads the log while a writer trims it: every read
// sees consecutive revisions, each the change applied at it, or ends with
// ErrCompacted.
func testTrimWhileReading(t *testing.T, o ChangeLogOpener) {
	s := openLog(t, o, store.ChangeLogLimits{Entries: 300})
	const total = 3000
	var wg sync.WaitGroup
	wg.Add(1)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(done)
		for i := 0; i < total; i++ {
			if _, err := s.Apply([]store.Record{rec(fmt.Sprintf("k%05d", i), "v", uint64(i+1), 1)}); err != nil {
				t.Errorf("Apply: %v", err)
				return
			}
		}
	}()
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-done:
				return
			default:
			}
			st := s.ChangeLog()
			after := st.First
			if after > 0 {
				after--
			}
			next := after + 1
			err := s.Changes(after, func(r store.Record) bool {
				if r.Revision != next || string(r.Key) != fmt.Sprintf("k%05d", r.Revision-1) {
					errs <- fmt.Errorf("change %q at revision %d, want revision %d of key k%05d", r.Key, r.Revision, next, next-1)
					return false
				}
				next++
				return true
			})
			if err != nil && !errors.Is(err, store.ErrCompacted) {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func testReopenKeepsRevisions(t *testing.T, o ChangeLogOpener) {
	if o.Reopen == nil {
		t.Skip("the store cannot be reopened")
	}
	l := store.ChangeLogLimits{Entries: 10}
	s := o.Open(t, l)
	all := applyN(t, s, 0, 15, "v")
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	before := s.ChangeLog()
	if before.Revision != 15 || before.Entries > 10 || before.First != 16-uint64(before.Entries) {
		t.Fatalf("ChangeLog = %+v, want revision 15 and at most 10 entries", before)
	}
	s = o.Reopen(t, s, l)
	defer func() { _ = s.Close() }()
	if st := s.ChangeLog(); st != before {
		t.Fatalf("ChangeLog after reopen = %+v, want %+v as before", st, before)
	}
	wantChanges(t, mustChanges(t, s, before.First-1), before.First, all[before.First-1:]...)
	recs := applyN(t, s, 15, 1, "w")
	if recs[0].Revision != 16 {
		t.Fatalf("first change after reopen got revision %d, want 16", recs[0].Revision)
	}
	wantChanges(t, mustChanges(t, s, 14), 15, all[14], recs[0])
}

func testReopenTrims(t *testing.T, o ChangeLogOpener) {
	if o.Reopen == nil {
		t.Skip("the store cannot be reopened")
	}
	s := o.Open(t, store.ChangeLogLimits{})
	all := applyN(t, s, 0, 20, "v")
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s = o.Reopen(t, s, store.ChangeLogLimits{Entries: 4})
	defer func() { _ = s.Close() }()
	if st := s.ChangeLog(); st.Revision != 20 || st.First != 17 || st.Entries != 4 {
		t.Fatalf("ChangeLog after reopen with a lower limit = %+v, want revision 20, first 17, 4 entries", st)
	}
	wantChanges(t, mustChanges(t, s, 16), 17, all[16:]...)
	wantCompacted(t, s, 15)
}
