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
