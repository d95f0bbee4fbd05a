package pebblestore

import (
	"encoding/binary"
	"fmt"

	"github.com/hearsaydb/hearsay/store"
)

// Key layout: every pebble key starts with a namespace byte.
const (
	// nsRecord prefixes the keys of records.
	nsRecord byte = 'r'
	// nsMeta prefixes the keys of metadata entries.
	nsMeta byte = 'm'
	// nsHash prefixes the key-hash index: 'h' + digest.KeyHash(key) as a
	// big-endian uint64 + key, with an empty value, one per record.
	nsHash byte = 'h'
	// nsInternal prefixes the store's own bookkeeping, apart from the
	// engine's metadata.
	nsInternal byte = 'i'
	// nsTomb prefixes the tombstone index: 't' + key, whose value is the
	// tombstone's version (HLC then node id, big endian), one per record
	// that is a tombstone. The tombstone sweep reads it instead of every
	// record, values and all.
	nsTomb byte = 't'
)

// tombVersionLen is the length of a tombstone index entry's value.
const tombVersionLen = 16

// keyTombIndexed is the internal key whose presence says that the
// tombstone index covers every tombstone (data directories written before
// the index existed get it built at open).
const keyTombIndexed = "tomb-index"

// encodeVersion returns v as a tombstone index value.
func encodeVersion(v store.Version) []byte {
	b := make([]byte, tombVersionLen)
	binary.BigEndian.PutUint64(b, v.HLC)
	binary.BigEndian.PutUint64(b[8:], v.Node)
	return b
}

// decodeVersion reads a tombstone index value.
func decodeVersion(b []byte) (store.Version, error) {
	if len(b) != tombVersionLen {
		return store.Version{}, fmt.Errorf("%w: tombstone index entry of %d bytes, want %d", ErrCorrupt, len(b), tombVersionLen)
	}
	return store.Version{HLC: binary.BigEndian.Uint64(b), Node: binary.BigEndian.Uint64(b[8:])}, nil
}

// keyHashIndexed is the internal key whose presence says that the key-hash
// index covers every record (data directories written before the index
// existed get it built at open).
const keyHashIndexed = "hash-index"

// hashKey returns the index entry's pebble key for key, whose hash is h.
func hashKey(h uint64, key []byte) []byte {
	k := make([]byte, 9, 9+len(key))
	k[0] = nsHash
	binary.BigEndian.PutUint64(k[1:], h)
	return append(k, key...)
}

// Record encoding: a fixed header, then the value.
//
//	offset size field
//	0      1    format (recordFormat)
//	1      8    version HLC, big endian
//	9      8    version node id, big endian
//	17     1    flags (flagTombstone, flagSigned; other bits must be zero)
//	18     64   signature, only with flagSigned
//	18/82  n    value
//
// Records written before signatures existed have no flagSigned and decode
// as before.
const (
	recordFormat  byte = 1
	headerLen          = 18
	flagTombstone byte = 1 << 0
	// flagSigned says a SigLen-byte signature follows the header.
	flagSigned = 1 << 1
	knownFlags = flagTombstone | flagSigned
	// SigLen is the length of a stored signature (Ed25519).
	SigLen    = 64
	offFormat = 0
	offHLC    = 1
	offNode   = 9
	offFlags  = 17
)

// dbKey returns the pebble key for key in namespace ns.
func dbKey(ns byte, key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = ns
	copy(k[1:], key)
	return k
}

// encodedLen returns the length of r's encoding.
func encodedLen(r store.Record) int { return headerLen + sigLen(r) + len(r.Value) }

// sigLen is the length r's signature takes in its encoding: SigLen or 0.
// A signature of another length cannot be stored; the engine never hands
// one over (it refuses such records), and encodeRecord drops it.
func sigLen(r store.Record) int {
	if len(r.Sig) == SigLen {
		return SigLen
	}
	return 0
}

// encodeRecord writes r's encoding into dst, which must be encodedLen(r)
// bytes long. The key is not part of the encoding: it is the pebble key.
func encodeRecord(dst []byte, r store.Record) {
	dst[offFormat] = recordFormat
	binary.BigEndian.PutUint64(dst[offHLC:], r.Version.HLC)
	binary.BigEndian.PutUint64(dst[offNode:], r.Version.Node)
	var flags byte
	if r.Tombstone {
		flags |= flagTombstone
	}
	off := headerLen
	if sigLen(r) > 0 {
		flags |= flagSigned
		off += copy(dst[headerLen:], r.Sig)
	}
	dst[offFlags] = flags
	copy(dst[off:], r.Value)
}

// decodeRecord decodes the record stored under key from b. It copies what it
// keeps, so b may be reused afterwards. Bytes that are not a valid encoding
// yield an error wrapping ErrCorrupt.
func decodeRecord(key, b []byte) (store.Record, error) {
	if len(b) < headerLen {
		return store.Record{}, fmt.Errorf("%w: record %q: %d bytes, shorter than the %d-byte header", ErrCorrupt, key, len(b), headerLen)
	}
	if b[offFormat] != recordFormat {
		return store.Record{}, fmt.Errorf("%w: record %q: unknown encoding format %d", ErrCorrupt, key, b[offFormat])
	}
	flags := b[offFlags]
	if flags&^knownFlags != 0 {
		return store.Record{}, fmt.Errorf("%w: record %q: unknown flags %#02x", ErrCorrupt, key, flags)
	}
	r := store.Record{
		Key: append([]byte(nil), key...),
		Version: store.Version{
			HLC:  binary.BigEndian.Uint64(b[offHLC:]),
			Node: binary.BigEndian.Uint64(b[offNode:]),
		},
		Tombstone: flags&flagTombstone != 0,
	}
	off := headerLen
	if flags&flagSigned != 0 {
		if len(b) < headerLen+SigLen {
			return store.Record{}, fmt.Errorf("%w: record %q: %d bytes, shorter than a signed record's header", ErrCorrupt, key, len(b))
		}
		r.Sig = append([]byte(nil), b[headerLen:headerLen+SigLen]...)
		off += SigLen
	}
	if len(b) > off {
		r.Value = append([]byte(nil), b[off:]...)
	}
	return r, nil
}

// prefixEnd returns the smallest key greater than every key with the given
// prefix, or nil when there is none (the prefix is empty or all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// bounds returns the pebble iterator bounds [lower, upper) covering the keys
// of namespace ns that have prefix and are at or after start.
func bounds(ns byte, prefix, start []byte) (lower, upper []byte) {
	from := prefix
	if string(start) > string(prefix) {
		from = start
	}
	lower = dbKey(ns, from)
	if end := prefixEnd(prefix); end != nil {
		upper = dbKey(ns, end)
	} else {
		upper = []byte{ns + 1}
	}
	return lower, upper
}
