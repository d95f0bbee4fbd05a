package pebblestore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hearsaydb/hearsay/store"
)

// FuzzDecodeChange checks that no change log entry makes decodeChange
// panic, that its errors wrap ErrCorrupt, and that what it accepts
// encodes to an entry that decodes to the same change.
func FuzzDecodeChange(f *testing.F) {
	good := encodeChange(store.Record{Key: []byte("k"), Value: []byte("hi"), Version: store.Version{HLC: 3, Node: 1}})
	f.Add(changeKey(7), good)
	f.Add(changeKey(1), encodeChange(store.Record{Key: []byte("t"), Tombstone: true, Version: store.Version{HLC: 1, Node: 2}}))
	f.Add([]byte("c"), good)
	f.Add(changeKey(1), good[:3])
	f.Add(changeKey(1), []byte{0x80})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		r, err := decodeChange(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := decodeChange(k, encodeChange(r))
		if err != nil || !bytes.Equal(again.Key, r.Key) || !bytes.Equal(again.Value, r.Value) ||
			again.Version != r.Version || again.Tombstone != r.Tombstone || again.Revision != r.Revision {
			t.Fatalf("re-encoding %x: %+v, %v; want %+v", v, again, err, r)
		}
	})
}
