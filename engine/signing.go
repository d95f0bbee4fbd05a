package engine

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hearsaydb/hearsay/internal/hlc"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// SigningEd25519 is the Settings.Signing of a certificate cluster: every
// record carries its origin's Ed25519 signature. An unsigned cluster says
// "none"; nodes of the two kinds refuse each other at join.
const SigningEd25519 = "ed25519"

// SigLen is the length of a record signature.
const SigLen = ed25519.SignatureSize

// Signer is a node's identity in a certificate cluster: its node
// certificate and key, and the cluster CA that checks its peers'. The
// engine signs its own writes with it and verifies every received record
// against the certificate of the record's origin (the node whose id is the
// version's node). Implementations do pure computation (no clock, no I/O):
// package hearsay's comes from internal/certs.
type Signer interface {
	// NodeID is the node id this node's certificate binds: Config.NodeID
	// must equal it.
	NodeID() uint64
	// Cert is this node's certificate, DER-encoded.
	Cert() []byte
	// Sign returns this node's Ed25519 signature over msg.
	Sign(msg []byte) []byte
	// CheckCert verifies a node certificate (DER) against the cluster CA at
	// now and returns what it binds: a node id (derived from the node's
	// name), the name, and the public key that verifies the node's
	// signatures.
	CheckCert(now time.Time, der []byte) (id uint64, name string, key ed25519.PublicKey, err error)
	// NodeIDOf returns the node id the certificate of the node named name
	// binds: how a membership claim, which names its signer, finds the
	// certificate that verifies it.
	NodeIDOf(name string) uint64
}

// signedDomain separates record signatures from anything else the same
// key might sign.
const signedDomain = "hearsay record v1\x00"

// SignedBytes returns the canonical encoding of r that its signature
// covers: a domain string, the version (HLC, node id), the tombstone flag,
// the key's length and the key, then the value (none for a tombstone).
// Every field is fixed-length or length-prefixed, so no two records share
// an encoding.
func SignedBytes(r store.Record) []byte {
	b := make([]byte, 0, len(signedDomain)+8+8+1+4+len(r.Key)+len(r.Value))
	b = append(b, signedDomain...)
	b = binary.BigEndian.AppendUint64(b, r.Version.HLC)
	b = binary.BigEndian.AppendUint64(b, r.Version.Node)
	if r.Tombstone {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Key)))
	b = append(b, r.Key...)
	if !r.Tombstone {
		b = append(b, r.Value...)
	}
	return b
}

// Reasons a received record is refused for its signature (Stats and the
// records_refused_total metric's reason label).
var (
	errNoSignature  = errors.New("no signature")
	errBadSignature = errors.New("signature does not verify")
	errUnknownOrig  = errors.New("the origin's certificate is unknown here")
	errRevokedOrig  = errors.New("the origin's certificate was revoked before this version")
)

// certEntry is a verified node certificate held in the cache.
type certEntry struct {
	der  []byte
	name string
	key  ed25519.PublicKey
	sum  [sha256.Size]byte
}

// metaCertPrefix prefixes the store metadata entries that keep verified
// certificates (one per node id, 8 bytes big endian), so that records of
// departed nodes still verify after a restart.
const metaCertPrefix = "cert/"

// maxCertsPerMessage bounds the ids of a CertRequest and the certificates
// of a CertReply handled.
const maxCertsPerMessage = 64

// certAskInterval is how often this node asks for the same missing
// certificate.
const certAskInterval = 200 * time.Millisecond

func (c Config) maxCerts() int {
	if c.MaxCerts > 0 {
		return c.MaxCerts
	}
	m := c.Membership.MaxMembers
	if m <= 0 {
		m = 4096
	}
	return 2 * m
}

// signing reports whether this node is in a certificate cluster.
func (e *Engine) signing() bool { return e.cfg.Signer != nil }

// initCerts loads the certificates kept by an earlier run and adds this
// node's own. A kept certificate that no longer verifies (expired, another
// CA) is forgotten.
func (e *Engine) initCerts(now time.Time) error {
	if !e.signing() {
		return nil
	}
	e.certs = map[uint64]*certEntry{}
	e.certSums = map[[sha256.Size]byte]uint64{}
	e.certAsked = map[uint64]time.Time{}
	var kept [][]byte
	var stale [][]byte
	err := e.st.ScanMeta([]byte(metaCertPrefix), func(k, v []byte) bool {
		if _, _, _, err := e.cfg.Signer.CheckCert(now, v); err != nil {
			stale = append(stale, slices.Clone(k))
			return true
		}
		kept = append(kept, slices.Clone(v))
		return true
	})
	if err != nil {
		return fmt.Errorf("engine: read kept certificates: %w", err)
	}
	for _, k := range stale {
		if err := e.st.SetMeta(k, nil); err != nil {
			return fmt.Errorf("engine: forget a stale certificate: %w", err)
		}
	}
	for _, der := range kept {
		e.learnCert(now, der)
	}
	if _, err := e.learnCert(now, e.cfg.Signer.Cert()); err != nil {
		return fmt.Errorf("engine: this node's own certificate: %w", err)
	}
	return nil
}

// learnCert verifies a node certificate and keeps it, replacing the one
// held for the same node id. It returns the node id it binds. Certificates
// already held cost a hash and a lookup.
func (e *Engine) learnCert(now time.Time, der []byte) (uint64, error) {
	sum := sha256.Sum256(der)
	if id, ok := e.certSums[sum]; ok {
		return id, nil
	}
	id, name, key, err := e.cfg.Signer.CheckCert(now, der)
	if err != nil {
		e.stats.CertsRefused++
		return 0, err
	}
	if old := e.certs[id]; old != nil {
		delete(e.certSums, old.sum)
	} else {
		if len(e.certs) >= e.cfg.maxCerts() {
			e.evictCert()
		}
		e.certOrder = append(e.certOrder, id)
	}
	ent := &certEntry{der: slices.Clone(der), name: name, key: key, sum: sum}
	e.certs[id] = ent
	e.certSums[sum] = id
	delete(e.certAsked, id)
	// Kept with the next commit. A failure only loses the certificate
	// across a restart; it is asked for again then.
	_ = e.st.SetMeta(certMetaKey(id), ent.der)
	return id, nil
}

// evictCert forgets the certificate learned first, never this node's own.
func (e *Engine) evictCert() {
	for i, id := range e.certOrder {
		if id == e.cfg.NodeID {
			continue
		}
		if ent := e.certs[id]; ent != nil {
			delete(e.certSums, ent.sum)
		}
		delete(e.certs, id)
		e.certOrder = slices.Delete(e.certOrder, i, i+1)
		e.stats.CertsEvicted++
		_ = e.st.SetMeta(certMetaKey(id), nil)
		return
	}
}

func certMetaKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(metaCertPrefix), id)
}

// NumCerts returns how many node certificates this node holds.
func (e *Engine) NumCerts() int { return len(e.certs) }

// BatchSigner is a Signer that can sign many messages at once, for
// instance on several cores: the engine signs the writes of a WriteBatch
// with it. SignBatch returns the signatures in the order of msgs.
type BatchSigner interface {
	SignBatch(msgs [][]byte) [][]byte
}

// signAll sets the signatures of local writes, in a certificate cluster.
func (e *Engine) signAll(recs []store.Record) {
	if !e.signing() {
		return
	}
	if bs, ok := e.cfg.Signer.(BatchSigner); ok && len(recs) > 1 {
		msgs := make([][]byte, len(recs))
		for i, r := range recs {
			msgs[i] = SignedBytes(r)
		}
		for i, sig := range bs.SignBatch(msgs) {
			recs[i].Sig = sig
		}
		return
	}
	for i := range recs {
		recs[i].Sig = e.cfg.Signer.Sign(SignedBytes(recs[i]))
	}
}

// verify checks a received record's signature against its origin's
// certificate. An unknown origin is added to unknown, to be asked for.
func (e *Engine) verify(r store.Record, unknown *[]uint64) error {
	if len(r.Sig) == 0 {
		return errNoSignature
	}
	ent := e.certs[r.Version.Node]
	if ent == nil {
		if !slices.Contains(*unknown, r.Version.Node) {
			*unknown = append(*unknown, r.Version.Node)
		}
		return fmt.Errorf("%w (node id %016x)", errUnknownOrig, r.Version.Node)
	}
	if len(r.Sig) != SigLen || !ed25519.Verify(ent.key, SignedBytes(r), r.Sig) {
		return fmt.Errorf("%w for node %s (id %016x)", errBadSignature, ent.name, r.Version.Node)
	}
	if e.cfg.Revoked != nil {
		if at, ok := e.cfg.Revoked(ent.name); ok && hlc.Time(r.Version.HLC).After(at) {
			return fmt.Errorf("%w: %s, revoked at %v", errRevokedOrig, ent.name, at.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// askCerts asks peer for the certificates of the given node ids, each at
// most once per certAskInterval. The peer verified the records it sent,
// so it holds them.
func (e *Engine) askCerts(now time.Time, peer string, ids []uint64) {
	var ask []uint64
	for _, id := range ids {
		if at, ok := e.certAsked[id]; ok && now.Sub(at) < certAskInterval && !now.Before(at) {
			continue
		}
		ask = append(ask, id)
	}
	if len(ask) == 0 {
		return
	}
	if len(e.certAsked) >= 4*maxCertsPerMessage {
		clear(e.certAsked) // bounded: forgetting only allows an early repeat
	}
	for _, id := range ask {
		e.certAsked[id] = now
	}
	e.stats.CertsAsked += uint64(len(ask))
	e.sendPeer(peer, &wire.Envelope{Body: &wire.Envelope_CertRequest{CertRequest: &wire.CertRequest{NodeIds: ask}}})
}

// answerCerts answers a CertRequest with the certificates held.
func (e *Engine) answerCerts(env *wire.Envelope, req *wire.CertRequest) {
	if !e.signing() {
		return
	}
	var out [][]byte
	for _, id := range req.NodeIds[:min(len(req.NodeIds), maxCertsPerMessage)] {
		if ent := e.certs[id]; ent != nil {
			out = append(out, ent.der)
		}
	}
	if len(out) > 0 {
		e.sendPeerOrAddr(env, &wire.Envelope{Body: &wire.Envelope_CertReply{CertReply: &wire.CertReply{Certs: out}}})
	}
}

// takeCerts learns the certificates of a CertReply. One that does not
// verify is an offence of the sender.
func (e *Engine) takeCerts(now time.Time, from string, certs [][]byte) error {
	if !e.signing() {
		return nil
	}
	var bad error
	for _, der := range certs[:min(len(certs), maxCertsPerMessage)] {
		if _, err := e.learnCert(now, der); err != nil && bad == nil {
			bad = fmt.Errorf("engine: certificate from %s refused: %w", from, err)
		}
	}
	if bad != nil {
		e.reportOffence(now, from, OffenceCertificate)
	}
	return bad
}

// takeMemberCerts learns the certificates carried by the member lists of a
// Join or JoinReply.
func (e *Engine) takeMemberCerts(now time.Time, env *wire.Envelope) error {
	var ms []*wire.Member
	switch b := env.Body.(type) {
	case *wire.Envelope_Join:
		ms = b.Join.Members
	case *wire.Envelope_JoinReply:
		ms = b.JoinReply.Members
	default:
		return nil
	}
	var certs [][]byte
	for _, m := range ms {
		if len(m.Cert) > 0 {
			certs = append(certs, m.Cert)
		}
	}
	var bad error
	for _, der := range certs {
		if _, err := e.learnCert(now, der); err != nil && bad == nil {
			bad = fmt.Errorf("engine: certificate from %s refused: %w", env.From, err)
		}
	}
	if bad != nil {
		e.reportOffence(now, env.From, OffenceCertificate)
	}
	return bad
}

// attachCerts adds the certificates held to the member lists of an
// outgoing join and its reply, so that a joiner learns every member's at
// once. The periodic push-pulls between members (sync) carry none: a
// member learns a certificate it lacks by asking (askCerts). Piggybacked
// updates never carry them either: they must fit a datagram.
func (e *Engine) attachCerts(env *wire.Envelope) {
	var ms []*wire.Member
	switch b := env.Body.(type) {
	case *wire.Envelope_Join:
		if b.Join.Sync {
			return
		}
		ms = b.Join.Members
	case *wire.Envelope_JoinReply:
		if b.JoinReply.Sync || b.JoinReply.Refused != "" {
			return
		}
		ms = b.JoinReply.Members
	default:
		return
	}
	for _, m := range ms {
		if ent := e.certs[m.NodeId]; ent != nil && m.Cert == nil {
			m.Cert = ent.der
		}
	}
}

// memberDomain separates membership claim signatures from record ones.
const memberDomain = "hearsay member v1\x00"

// MemberSignedBytes returns the canonical encoding of a membership claim
// that its signature covers: a domain string, the member's name and
// address (length-prefixed), incarnation and node id (8 bytes each), state
// (1 byte) and the accuser (length-prefixed; empty for a member's claim
// about itself).
func MemberSignedBytes(u *wire.Member) []byte {
	b := make([]byte, 0, len(memberDomain)+4+len(u.Name)+4+len(u.Address)+8+8+1+4+len(u.From))
	b = append(b, memberDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(u.Name)))
	b = append(b, u.Name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(u.Address)))
	b = append(b, u.Address...)
	b = binary.BigEndian.AppendUint64(b, u.Incarnation)
	b = binary.BigEndian.AppendUint64(b, u.NodeId)
	b = append(b, byte(u.State))
	b = binary.BigEndian.AppendUint32(b, uint32(len(u.From)))
	b = append(b, u.From...)
	return b
}

// signMember signs a claim this node makes (membership.SetSigner).
func (e *Engine) signMember(u *wire.Member) {
	u.Sig = e.cfg.Signer.Sign(MemberSignedBytes(u))
}

// claimSigner returns the name of the node that must have signed u: the
// member itself for alive and left, the accuser for suspect and dead.
func claimSigner(u *wire.Member) string {
	switch u.State {
	case wire.State_SUSPECT, wire.State_DEAD:
		return u.From
	}
	return u.Name
}

// checkClaims drops, from the membership updates of env (piggybacked and
// in Join and JoinReply lists), every claim that is not signed by the node
// that must make it, before the member view sees them. An unsigned claim
// is dropped quietly (a member's implicit entry, heard first-hand, travels
// unsigned and is learned again from the member itself); a signature that
// does not verify is an offence of the sender; a signer whose certificate
// is not held is asked of the sender.
func (e *Engine) checkClaims(now time.Time, env *wire.Envelope) {
	var unknown []uint64
	bad := false
	filter := func(ms []*wire.Member) []*wire.Member {
		out := ms[:0]
		for _, u := range ms {
			switch err := e.verifyClaim(u); {
			case err == nil:
				out = append(out, u)
			case errors.Is(err, errNoSignature):
				e.stats.ClaimsUnsigned++
			case errors.Is(err, errUnknownOrig):
				e.stats.ClaimsUnknown++
				if id := e.cfg.Signer.NodeIDOf(claimSigner(u)); !slices.Contains(unknown, id) {
					unknown = append(unknown, id)
				}
			case errors.Is(err, errRevokedOrig):
				e.stats.ClaimsRefused++ // relayed in good faith: no offence
			default:
				e.stats.ClaimsRefused++
				bad = true
			}
		}
		clear(ms[len(out):])
		return out
	}
	env.Members = filter(env.Members)
	switch b := env.Body.(type) {
	case *wire.Envelope_Join:
		b.Join.Members = filter(b.Join.Members)
	case *wire.Envelope_JoinReply:
		b.JoinReply.Members = filter(b.JoinReply.Members)
	}
	if bad {
		e.reportOffence(now, env.From, OffenceClaim)
	}
	if len(unknown) > 0 && env.From != "" {
		e.askCerts(now, env.From, unknown[:min(len(unknown), maxCertsPerMessage)])
	}
}

// verifyClaim checks a membership claim's signature.
func (e *Engine) verifyClaim(u *wire.Member) error {
	if len(u.Sig) == 0 {
		return errNoSignature
	}
	signer := claimSigner(u)
	if signer == "" {
		return fmt.Errorf("%w: a %v claim names no accuser", errBadSignature, u.State)
	}
	id := e.cfg.Signer.NodeIDOf(signer)
	if (u.State == wire.State_ALIVE || u.State == wire.State_LEFT) && u.NodeId != id {
		return fmt.Errorf("%w: member %s claims node id %016x, its name binds %016x", errBadSignature, u.Name, u.NodeId, id)
	}
	ent := e.certs[id]
	if ent == nil {
		return errUnknownOrig
	}
	if len(u.Sig) != SigLen || !ed25519.Verify(ent.key, MemberSignedBytes(u), u.Sig) {
		return fmt.Errorf("%w: %v claim about %s by %s", errBadSignature, u.State, u.Name, signer)
	}
	if e.cfg.Revoked != nil {
		if _, ok := e.cfg.Revoked(signer); ok {
			// A claim carries no time to compare with the revocation's:
			// a revoked node's word counts for nothing any more.
			return fmt.Errorf("%w: %v claim about %s by %s", errRevokedOrig, u.State, u.Name, signer)
		}
	}
	return nil
}

// stripClaimSigs drops the signatures of membership claims, which an
// unsigned cluster neither checks nor forwards.
func stripClaimSigs(env *wire.Envelope) {
	strip := func(ms []*wire.Member) {
		for _, u := range ms {
			u.Sig = nil
		}
	}
	strip(env.Members)
	switch b := env.Body.(type) {
	case *wire.Envelope_Join:
		strip(b.Join.Members)
	case *wire.Envelope_JoinReply:
		strip(b.JoinReply.Members)
	}
}
