package wire

import "github.com/hearsaydb/hearsay/store"

// FromStore returns the wire form of a store record. The two share the
// key, value and signature bytes.
func FromStore(r store.Record) *Record {
	return &Record{Key: r.Key, Value: r.Value, Hlc: r.Version.HLC, Node: r.Version.Node, Tombstone: r.Tombstone, Sig: r.Sig}
}

// Store returns the store form of a wire record. The two share the key and
// value bytes.
func (x *Record) Store() store.Record {
	return store.Record{Key: x.GetKey(), Value: x.GetValue(), Version: store.Version{HLC: x.GetHlc(), Node: x.GetNode()}, Tombstone: x.GetTombstone(), Sig: x.GetSig()}
}
