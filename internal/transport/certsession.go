package transport

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// Session frames.
//
// An Ed25519 signature per frame is the expensive part of certificate
// authentication (docs/PERFORMANCE.md). So every node also has an
// ephemeral X25519 session key, made at start and carried in every signed
// frame, where the node's certificate vouches for it. Two nodes that have
// each seen the other's session key share a MAC key,
//
//	SHA-256("hearsay session v1" | X25519 shared secret | the two public keys, smaller first)
//
// and once a sender knows that the destination holds its certificate (see
// knownPeers) it authenticates frames to it with that key instead of a
// signature:
//
//	outer header (8)   magic "HS" | version | flags = flagMAC | body length
//	key id (8)         the sender's certificate
//	time (8)           Unix nanoseconds, big endian
//	session id (8)     the first 8 bytes of the receiver's session key the MAC key was made with
//	inner frame        plain or sealed
//	tag (16)           HMAC-SHA-256 with the MAC key over everything before it, truncated
//
// The receiver checks, as for a signed frame, that the certificate is
// known, valid and not revoked, the time within the replay window and the
// sender's name; then the session id and the tag. A frame made with a
// session key the receiver no longer has (it restarted) is refused with
// "unknown session: sign", on which the sender signs again, carrying its
// session key, until it hears from the receiver (and so its new key).
const (
	flagMAC        byte = 0x10
	sessionKeySize      = 32
	sessionIDSize       = 8
	macTagSize          = 16
	macPrefix           = KeyIDSize + 8 + sessionIDSize
	// MACOverhead is how many bytes a session frame adds to a frame.
	MACOverhead = wire.HeaderSize + macPrefix + macTagSize

	reasonUnknownSession = "unknown session: sign"
)

// session is a node's ephemeral session key and the destinations it has
// bound to peers' certificates.
type session struct {
	sess    *ecdh.PrivateKey
	sessPub []byte

	addrMu sync.Mutex
	addrs  map[string][KeyIDSize]byte // destination address -> certificate key id
	macs   atomic.Uint64              // frames authenticated with a session
}

func (s *session) init() error {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("session key: %w", err)
	}
	s.sess, s.sessPub = k, k.PublicKey().Bytes()
	s.addrs = map[string][KeyIDSize]byte{}
	return nil
}

// learnSession records the session key a peer sent in a verified signed
// frame, deriving the MAC key when it is new, and returns the peer's
// current entry.
func (a *CertAuth) learnSession(id [KeyIDSize]byte, pc *peerCert, pub []byte) *peerCert {
	if bytes.Equal(pc.sessPub, pub) {
		return pc
	}
	peer, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return pc
	}
	shared, err := a.sess.ECDH(peer)
	if err != nil {
		return pc // a low-order point: no session with this key
	}
	h := sha256.New()
	h.Write([]byte("hearsay session v1"))
	h.Write(shared)
	lo, hi := a.sessPub, pub
	if bytes.Compare(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	h.Write(lo)
	h.Write(hi)
	npc := *pc
	npc.sessPub, npc.macKey = bytes.Clone(pub), h.Sum(nil)
	a.mu.Lock()
	if a.cache[id] == pc {
		a.cache[id] = &npc
	}
	a.mu.Unlock()
	return &npc
}

// bind records that frames from addr are signed by certificate id, so
// that frames to addr can be authenticated with the session.
func (a *CertAuth) bind(addr string, id [KeyIDSize]byte) {
	if addr == "" {
		return
	}
	a.addrMu.Lock()
	defer a.addrMu.Unlock()
	if old, ok := a.addrs[addr]; ok && old == id {
		return
	}
	if len(a.addrs) >= maxKnownPeers {
		clear(a.addrs)
	}
	a.addrs[addr] = id
}

// macFrame authenticates frame to addr with the session shared with it;
// false if there is none yet.
func (a *CertAuth) macFrame(addr string, frame []byte) ([]byte, bool) {
	a.addrMu.Lock()
	id, ok := a.addrs[addr]
	a.addrMu.Unlock()
	if !ok {
		return nil, false
	}
	a.mu.Lock()
	pc := a.cache[id]
	a.mu.Unlock()
	if pc == nil || pc.macKey == nil {
		return nil, false
	}
	body := macPrefix + len(frame) + macTagSize
	if uint64(body) > uint64(^uint32(0)) {
		return nil, false
	}
	out := make([]byte, wire.HeaderSize, wire.HeaderSize+body)
	putHeader(out, flagMAC, body)
	out = append(out, a.keyID[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(a.now().UnixNano()))
	out = append(out, pc.sessPub[:sessionIDSize]...)
	out = append(out, frame...)
	m := hmac.New(sha256.New, pc.macKey)
	m.Write(out)
	a.macs.Add(1)
	return m.Sum(out)[:len(out)+macTagSize], true
}

// openMAC checks a session frame.
func (a *CertAuth) openMAC(raw []byte) ([]byte, *peerCert, [KeyIDSize]byte, error) {
	var id [KeyIDSize]byte
	_, n, err := parseHeader(raw, -1)
	if err != nil {
		return nil, nil, id, fmt.Errorf("transport: open session frame: %w", err)
	}
	body := raw[wire.HeaderSize:]
	if len(body) != n {
		return nil, nil, id, fmt.Errorf("transport: open session frame: %w: header says %d bytes, got %d", wire.ErrShort, n, len(body))
	}
	if len(body) < macPrefix+macTagSize {
		return nil, nil, id, fmt.Errorf("transport: open session frame: %w: body of %d bytes, minimum %d", wire.ErrShort, len(body), macPrefix+macTagSize)
	}
	copy(id[:], body)
	at := int64(binary.BigEndian.Uint64(body[KeyIDSize:]))
	sid := body[KeyIDSize+8 : macPrefix]
	now := a.now()
	a.mu.Lock()
	pc := a.cache[id]
	a.mu.Unlock()
	if pc == nil {
		a.refused.Add(1)
		return nil, nil, id, a.refuse(reasonUnknownCert, "key id %x", id)
	}
	if err := a.checkPeer(pc, now); err != nil {
		return nil, nil, id, err
	}
	if pc.macKey == nil || !bytes.Equal(sid, a.sessPub[:sessionIDSize]) {
		a.refused.Add(1)
		return nil, nil, id, a.refuse(reasonUnknownSession, "session %x of %q", sid, pc.name)
	}
	m := hmac.New(sha256.New, pc.macKey)
	m.Write(raw[:len(raw)-macTagSize])
	if !hmac.Equal(m.Sum(nil)[:macTagSize], raw[len(raw)-macTagSize:]) {
		a.refused.Add(1)
		return nil, nil, id, a.refuse(reasonBadSig, "session frame of %q does not verify", pc.name)
	}
	if err := a.checkTime(pc, at, now); err != nil {
		return nil, nil, id, err
	}
	return body[macPrefix : len(body)-macTagSize], pc, id, nil
}
