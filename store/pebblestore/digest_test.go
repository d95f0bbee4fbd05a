package pebblestore

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/hearsaydb/hearsay/store"
	"github.com/hearsaydb/hearsay/store/storetest"
)

func TestDigestRebuiltAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DigestCells: 1024})
	var recs []store.Record
	for i := range 500 {
		recs = append(recs, rec(fmt.Sprintf("k%03d", i), "v", uint64(i+1)))
	}
	if _, err := s.Apply(recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(recs[7].Key, recs[7].Version); err != nil {
		t.Fatal(err)
	}
	before := s.Digest().Snapshot()
	closeStore(t, s)

	s = mustOpen(t, dir, Options{DigestCells: 1024})
	if !slices.Equal(s.Digest().Snapshot(), before) {
		t.Fatal("digest rebuilt at open differs from the one kept in place")
	}
	storetest.CheckDigest(t, s)
	closeStore(t, s)
}

// TestKeyHashIndexBuiltForOldDirectories opens a directory written before
// the key-hash index existed (simulated by deleting the index and its
// marker) and expects the index built at open.
func TestKeyHashIndexBuiltForOldDirectories(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DigestCells: 256})
	var recs []store.Record
	for i := range 100 {
		recs = append(recs, rec(fmt.Sprintf("k%03d", i), "v", uint64(i+1)))
	}
	if _, err := s.Apply(recs); err != nil {
		t.Fatal(err)
	}
	if err := s.db.DeleteRange([]byte{nsHash}, []byte{nsHash + 1}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Delete(dbKey(nsInternal, []byte(keyHashIndexed)), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetByHash(recs[0].Item().KeyHash); err != nil || len(got) != 0 {
		t.Fatalf("index not deleted: %v %v", got, err)
	}
	closeStore(t, s)
	s = mustOpen(t, dir, Options{DigestCells: 256})
	defer closeStore(t, s)
	storetest.CheckDigest(t, s)
}

// TestTombstoneIndexBuiltForOldDirectories opens a directory written
// before the tombstone index existed (simulated by deleting the index and
// its marker) and expects the index built at open.
func TestTombstoneIndexBuiltForOldDirectories(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DigestCells: 256})
	var recs []store.Record
	for i := range 100 {
		r := rec(fmt.Sprintf("k%03d", i), "v", uint64(i+1))
		if i%3 == 0 {
			r.Value, r.Tombstone = nil, true
		}
		recs = append(recs, r)
	}
	if _, err := s.Apply(recs); err != nil {
		t.Fatal(err)
	}
	storetest.CheckTombstones(t, s)
	if err := s.db.DeleteRange([]byte{nsTomb}, []byte{nsTomb + 1}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Delete(dbKey(nsInternal, []byte(keyTombIndexed)), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ScanTombstones(nil, func(store.Record) bool { n++; return true }); err != nil || n != 0 {
		t.Fatalf("index not deleted: %d tombstones, %v", n, err)
	}
	closeStore(t, s)
	s = mustOpen(t, dir, Options{DigestCells: 256})
	defer closeStore(t, s)
	storetest.CheckTombstones(t, s)
	storetest.CheckDigest(t, s)
}
