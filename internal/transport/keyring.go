package transport

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Sealed frame layout (see Keyring):
//
//	outer header (8)  magic "HS" | version | flags=flagSealed | body length
//	scheme (1)        sealSchemeAESGCM
//	nonce (12)        random
//	ciphertext        AES-GCM(inner plain frame), additional data = outer header
//	tag (16)
const (
	flagSealed         byte = 0x01
	sealSchemeAESGCM   byte = 1
	nonceSize               = 12
	tagSize                 = 16
	sealedBodyPrefix        = 1 + nonceSize
	sealedBodyOverhead      = sealedBodyPrefix + tagSize
	// SealOverhead is how many bytes sealing adds to a plain frame.
	SealOverhead = wire.HeaderSize + sealedBodyOverhead
)

// ErrAuth reports a frame that could not be authenticated: sealed with an
// unknown key, tampered with, plaintext sent to a node with a keyring, or
// sealed and sent to a node without one.
var ErrAuth = errors.New("transport: frame authentication failed")

// ErrKey reports an unusable encryption key.
var ErrKey = errors.New("transport: invalid key")

// MaxKeys is the most keys a Keyring holds. Every received frame may be
// tried against each of them, and rotation needs two at a time: 16 is
// plenty.
const MaxKeys = 16

// KeyID returns the short, stable identifier of a key: the first 8 hex
// digits of the SHA-256 of its bytes. It names a key in `hearsay keys`
// without showing it.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// Keyring holds the AES-GCM keys of a cluster, memberlist style: every frame
// is sealed with the primary key, and a received frame is accepted if any key
// of the ring opens it. To rotate keys without downtime, add the new key to
// every node, then make it primary everywhere, then remove the old key.
//
// A Keyring is safe for concurrent use.
type Keyring struct {
	mu    sync.Mutex // serialises changes; readers use state
	state atomic.Pointer[keyState]
}

// keyState is an immutable snapshot of the ring; keys[0] is the primary.
type keyState struct {
	keys  [][]byte
	aeads []cipher.AEAD
}

// NewKeyring returns a keyring whose primary key is primary, also accepting
// frames sealed with any of others. Keys must be 16, 24 or 32 bytes
// (AES-128, AES-192, AES-256).
func NewKeyring(primary []byte, others ...[]byte) (*Keyring, error) {
	st, err := newKeyState(append([][]byte{primary}, others...))
	if err != nil {
		return nil, err
	}
	kr := &Keyring{}
	kr.state.Store(st)
	return kr, nil
}

// newKeyState builds a ring state from keys, primary first, dropping
// duplicates.
func newKeyState(keys [][]byte) (*keyState, error) {
	st := &keyState{}
	for i, k := range keys {
		if st.index(k) >= 0 {
			continue
		}
		a, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("transport: keyring key %d: %w", i, err)
		}
		st.keys = append(st.keys, bytes.Clone(k))
		st.aeads = append(st.aeads, a)
	}
	switch {
	case len(st.keys) == 0:
		return nil, fmt.Errorf("transport: keyring: %w: no key", ErrKey)
	case len(st.keys) > MaxKeys:
		return nil, fmt.Errorf("transport: keyring: %w: %d keys, at most %d", ErrKey, len(st.keys), MaxKeys)
	}
	return st, nil
}

// SetKeys replaces every key of the ring at once: keys[0] becomes the
// primary key. It fails, changing nothing, if a key is unusable, if there
// is none or more than MaxKeys.
func (k *Keyring) SetKeys(keys [][]byte) error {
	st, err := newKeyState(keys)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state.Store(st)
	return nil
}

// IDs returns the KeyID of each key of the ring, primary first.
func (k *Keyring) IDs() []string {
	st := k.state.Load()
	out := make([]string, len(st.keys))
	for i, key := range st.keys {
		out[i] = KeyID(key)
	}
	return out
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: %d bytes, want 16, 24 or 32", ErrKey, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return a, nil
}

func (st *keyState) index(k []byte) int {
	for i, have := range st.keys {
		if bytes.Equal(have, k) {
			return i
		}
	}
	return -1
}

// ParseKey decodes a base64 (standard encoding, padded or not) AES key of 16,
// 24 or 32 bytes, as given on a command line or in a configuration file.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		var err2 error
		if k, err2 = base64.RawStdEncoding.DecodeString(s); err2 != nil {
			return nil, fmt.Errorf("%w: not base64: %v", ErrKey, err)
		}
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: decodes to %d bytes, want 16, 24 or 32", ErrKey, len(k))
	}
}

// Keys returns copies of the ring's keys, primary first.
func (k *Keyring) Keys() [][]byte {
	st := k.state.Load()
	out := make([][]byte, len(st.keys))
	for i, key := range st.keys {
		out[i] = bytes.Clone(key)
	}
	return out
}

// AddKey adds key to the ring as a secondary key; adding a key that is
// already present does nothing. A ring holds at most MaxKeys keys.
func (k *Keyring) AddKey(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state.Load()
	if st.index(key) >= 0 {
		return nil
	}
	if len(st.keys) >= MaxKeys {
		return fmt.Errorf("transport: add key: %w: the keyring is full (%d keys); remove one first", ErrKey, MaxKeys)
	}
	a, err := newAEAD(key)
	if err != nil {
		return fmt.Errorf("transport: add key: %w", err)
	}
	k.state.Store(&keyState{
		keys:  append(append([][]byte(nil), st.keys...), bytes.Clone(key)),
		aeads: append(append([]cipher.AEAD(nil), st.aeads...), a),
	})
	return nil
}

// UseKey makes key, which must already be in the ring, the primary key.
func (k *Keyring) UseKey(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state.Load()
	i := st.index(key)
	if i < 0 {
		return fmt.Errorf("transport: use key: %w: not in the keyring", ErrKey)
	}
	ns := &keyState{
		keys:  append([][]byte(nil), st.keys...),
		aeads: append([]cipher.AEAD(nil), st.aeads...),
	}
	ns.keys[0], ns.keys[i] = ns.keys[i], ns.keys[0]
	ns.aeads[0], ns.aeads[i] = ns.aeads[i], ns.aeads[0]
	k.state.Store(ns)
	return nil
}

// RemoveKey removes a secondary key from the ring. The primary key cannot be
// removed; make another key primary first.
func (k *Keyring) RemoveKey(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.state.Load()
	i := st.index(key)
	switch {
	case i < 0:
		return nil
	case i == 0:
		return fmt.Errorf("transport: remove key: %w: cannot remove the primary key", ErrKey)
	}
	ns := &keyState{}
	for j := range st.keys {
		if j != i {
			ns.keys = append(ns.keys, st.keys[j])
			ns.aeads = append(ns.aeads, st.aeads[j])
		}
	}
	k.state.Store(ns)
	return nil
}

// Seal encrypts and authenticates a plain frame (as made by wire.Marshal)
// with the primary key and returns the sealed frame: a frame header with the
// sealed flag, then the scheme byte, a random 12-byte nonce and the AES-GCM
// ciphertext of the whole plain frame. The sealed frame's header is
// authenticated as additional data.
func (k *Keyring) Seal(frame []byte) ([]byte, error) {
	bodyLen := sealedBodyOverhead + len(frame)
	if uint64(bodyLen) > uint64(^uint32(0)) {
		return nil, fmt.Errorf("transport: seal: %w: %d bytes", wire.ErrTooLarge, len(frame))
	}
	a := k.state.Load().aeads[0]
	var hdr [wire.HeaderSize]byte
	putHeader(hdr[:], flagSealed, bodyLen)
	out := make([]byte, wire.HeaderSize+sealedBodyPrefix, wire.HeaderSize+bodyLen)
	copy(out, hdr[:])
	out[wire.HeaderSize] = sealSchemeAESGCM
	nonce := out[wire.HeaderSize+1 : wire.HeaderSize+sealedBodyPrefix]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("transport: seal: nonce: %w", err)
	}
	return a.Seal(out, nonce, frame, hdr[:]), nil
}

// Open checks and decrypts a sealed frame made by Seal with any key of the
// ring, and returns the inner plain frame, which the caller still has to
// decode (wire.Unmarshal). Any failure wraps ErrAuth, or a wire error for a
// frame that is not a sealed hearsay frame at all; Open never panics on
// arbitrary input.
func (k *Keyring) Open(sealed []byte) ([]byte, error) {
	flags, n, err := parseHeader(sealed, -1)
	if err != nil {
		return nil, fmt.Errorf("transport: open: %w", err)
	}
	if flags != flagSealed {
		return nil, fmt.Errorf("transport: open: %w: frame is not sealed (flags %#x)", ErrAuth, flags)
	}
	body := sealed[wire.HeaderSize:]
	if len(body) != n {
		return nil, fmt.Errorf("transport: open: %w: header says %d bytes, got %d", wire.ErrShort, n, len(body))
	}
	if len(body) < sealedBodyOverhead {
		return nil, fmt.Errorf("transport: open: %w: sealed body of %d bytes, minimum %d", wire.ErrShort, len(body), sealedBodyOverhead)
	}
	if body[0] != sealSchemeAESGCM {
		return nil, fmt.Errorf("transport: open: %w: unknown seal scheme %d", ErrAuth, body[0])
	}
	nonce := body[1:sealedBodyPrefix]
	ct := body[sealedBodyPrefix:]
	hdr := sealed[:wire.HeaderSize]
	for _, a := range k.state.Load().aeads {
		if plain, err := a.Open(nil, nonce, ct, hdr); err == nil {
			return plain, nil
		}
	}
	return nil, fmt.Errorf("transport: open: %w: no key in the keyring opens the frame", ErrAuth)
}

// magic is the frame magic of package wire, which does not export it.
var magic = [2]byte{'H', 'S'}

func putHeader(buf []byte, flags byte, size int) {
	buf[0], buf[1] = magic[0], magic[1]
	buf[2] = wire.ProtocolVersion
	buf[3] = flags
	binary.BigEndian.PutUint32(buf[4:8], uint32(size))
}

// parseHeader checks a frame header as package wire does and also returns
// its flags. limit < 0 means no size limit (the caller compares the length
// with the data it has).
func parseHeader(h []byte, limit int) (flags byte, n int, err error) {
	if len(h) < wire.HeaderSize {
		return 0, 0, fmt.Errorf("%w: %d header bytes, want %d", wire.ErrShort, len(h), wire.HeaderSize)
	}
	if h[0] != magic[0] || h[1] != magic[1] {
		return 0, 0, fmt.Errorf("%w: magic %#x %#x", wire.ErrMagic, h[0], h[1])
	}
	if h[2] != wire.ProtocolVersion {
		return 0, 0, fmt.Errorf("%w: peer speaks version %d, this node %d", wire.ErrVersion, h[2], wire.ProtocolVersion)
	}
	flags = h[3]
	size := binary.BigEndian.Uint32(h[4:8])
	if limit >= 0 {
		if flags&flagSealed != 0 {
			limit += SealOverhead
		}
		if flags&flagSigned != 0 {
			limit += SignOverhead + 2 + MaxAttachedCert + SealOverhead
		}
		if flags&flagMAC != 0 {
			limit += MACOverhead + SealOverhead
		}
		if uint64(size) > uint64(limit) {
			return 0, 0, fmt.Errorf("%w: %d bytes, limit %d", wire.ErrTooLarge, size, limit)
		}
	}
	if uint64(size) > uint64(maxInt) {
		return 0, 0, fmt.Errorf("%w: %d bytes", wire.ErrTooLarge, size)
	}
	return flags, int(size), nil
}

const maxInt = int(^uint(0) >> 1)
