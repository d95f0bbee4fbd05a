package transport

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/wire"
)

// Signed frame layout (see CertAuth):
//
//	outer header (8)   magic "HS" | version | flags = flagSigned [| flagCert] | body length
//	key id (8)         the first 8 bytes of SHA-256 of the sender's certificate (DER)
//	time (8)           when the frame was signed, Unix nanoseconds, big endian
//	session key (32)   the sender's X25519 session public key (see certsession.go)
//	[cert length (2) | certificate DER]   only with flagCert
//	inner frame        a whole frame: plain (wire.Marshal) or sealed (Keyring.Seal)
//	signature (64)     Ed25519, by the certificate's key, over everything before it
const (
	flagSigned byte = 0x04
	flagCert   byte = 0x08
	// KeyIDSize is the size of a certificate's key id.
	KeyIDSize = 8
	// MaxAttachedCert is the largest certificate a frame may carry.
	MaxAttachedCert = 4096
	signedPrefix    = KeyIDSize + 8 + sessionKeySize
	// SignOverhead is how many bytes signing adds to a frame without a
	// certificate attached; an attached certificate adds 2 plus its size.
	SignOverhead = wire.HeaderSize + signedPrefix + ed25519.SignatureSize
	// DefaultReplayWindow is how far a signed frame's time may be from the
	// receiver's clock.
	DefaultReplayWindow = 5 * time.Minute
	// DefaultMaxCachedCerts bounds the verified certificates a node keeps.
	DefaultMaxCachedCerts = 1024
	// maxKnownPeers bounds the destinations known to hold this node's
	// certificate; beyond it the set starts again (certificates are
	// attached again, which costs bytes, not correctness).
	maxKnownPeers = 4096
)

// Reasons sent in refusal notices by a node with certificates, or to a
// node with them. Each starts with what went wrong in a few words.
const (
	reasonNoCert      = "no certificate: the receiver requires gossip signed by a node certificate of its CA (--certs-dir)"
	reasonNoCertsHere = "certificate not accepted: the receiver has no --certs-dir and refuses signed frames"
	reasonUnknownCert = "unknown certificate: attach it"
	reasonOtherCA     = "certificate signed by another CA: the receiver trusts only its ca.crt"
	reasonExpired     = "certificate expired or not yet valid"
	reasonRevoked     = "certificate revoked"
	reasonNotNode     = "certificate is not a node certificate"
	reasonBadCert     = "bad certificate: it does not parse or does not match its key id"
	reasonBadSig      = "bad signature: the frame does not verify with its certificate"
	reasonWrongName   = "certificate name differs from the envelope's sender name"
	reasonStale       = "frame time outside the replay window: is a clock wrong?"
)

// CertAuth authenticates gossip with node certificates of one cluster CA:
// every frame this node sends is signed with its node key, and a received
// frame is accepted only if it is signed by a valid, unexpired, unrevoked
// node certificate of the same CA whose name (CN) is the envelope's sender.
//
// A frame carries the sender's key id (8 bytes of the certificate's
// SHA-256) and, until the destination is known to hold it, the certificate
// itself. A receiver verifies an attached certificate against the CA once
// and caches it by key id (bounded by MaxCachedCerts); a frame with an
// unknown key id and no certificate is refused with a notice "unknown
// certificate: attach it", on which the sender attaches it again.
//
// The signed part includes the time of signing; a frame whose time is more
// than ReplayWindow from the receiver's clock is refused. Within the window
// a replayed frame is harmless: records merge last-writer-wins and are
// idempotent, membership news is ordered by incarnation, and probes carry
// sequence numbers that an old ack does not match.
//
// A CertAuth is safe for concurrent use.
type CertAuth struct {
	ca     *x509.Certificate
	cert   *x509.Certificate
	key    ed25519.PrivateKey
	keyID  [KeyIDSize]byte
	name   string
	window time.Duration
	max    int
	now    func() time.Time

	// Revoked, if set, tells whether a node name is revoked (see
	// certs.RevocationList). Set it before the transport starts.
	Revoked func(name string) bool

	mu    sync.Mutex
	cache map[[KeyIDSize]byte]*peerCert

	session
	verified, refused atomic.Uint64
}

// peerCert is a verified certificate of a peer.
type peerCert struct {
	name      string
	pub       ed25519.PublicKey
	notBefore time.Time
	notAfter  time.Time
	// The peer's session key and the key of MAC frames between the two
	// (certsession.go); nil until a signed frame brought it.
	sessPub []byte
	macKey  []byte
}

// CertAuthConfig configures NewCertAuth.
type CertAuthConfig struct {
	// CA is the cluster CA; Cert and Key the node's certificate and key.
	CA   *x509.Certificate
	Cert *x509.Certificate
	Key  ed25519.PrivateKey
	// ReplayWindow is how far a frame's signing time may be from this
	// node's clock. Default DefaultReplayWindow.
	ReplayWindow time.Duration
	// MaxCachedCerts bounds the verified peer certificates kept. Default
	// DefaultMaxCachedCerts.
	MaxCachedCerts int
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// NewCertAuth checks the node's certificate against the CA and returns the
// authenticator.
func NewCertAuth(cfg CertAuthConfig) (*CertAuth, error) {
	if cfg.CA == nil || cfg.Cert == nil || cfg.Key == nil {
		return nil, errors.New("transport: certificates: CA, certificate and key are all required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = DefaultReplayWindow
	}
	if cfg.MaxCachedCerts <= 0 {
		cfg.MaxCachedCerts = DefaultMaxCachedCerts
	}
	if err := certs.Verify(cfg.Cert, cfg.CA, x509.ExtKeyUsageServerAuth, cfg.Now()); err != nil {
		return nil, fmt.Errorf("transport: node certificate: %w", err)
	}
	pub, ok := cfg.Cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(cfg.Key.Public()) {
		return nil, errors.New("transport: node key is not the certificate's key")
	}
	if len(cfg.Cert.Raw) > MaxAttachedCert {
		return nil, fmt.Errorf("transport: node certificate of %d bytes, at most %d can travel", len(cfg.Cert.Raw), MaxAttachedCert)
	}
	a := &CertAuth{
		ca: cfg.CA, cert: cfg.Cert, key: cfg.Key, keyID: CertKeyID(cfg.Cert),
		name: cfg.Cert.Subject.CommonName, window: cfg.ReplayWindow, max: cfg.MaxCachedCerts,
		now: cfg.Now, cache: map[[KeyIDSize]byte]*peerCert{},
	}
	if err := a.session.init(); err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	return a, nil
}

// CertKeyID returns a certificate's key id: the first 8 bytes of the SHA-256
// of its DER encoding.
func CertKeyID(c *x509.Certificate) [KeyIDSize]byte {
	sum := sha256.Sum256(c.Raw)
	var id [KeyIDSize]byte
	copy(id[:], sum[:])
	return id
}

// Name returns the node name of the authenticator's certificate.
func (a *CertAuth) Name() string { return a.name }

// Cached returns the number of verified peer certificates kept.
func (a *CertAuth) Cached() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cache)
}

// Sign wraps frame (plain or sealed) in a signed frame, attaching the
// node's certificate if attach is set.
func (a *CertAuth) Sign(frame []byte, attach bool) ([]byte, error) {
	body := signedPrefix + len(frame) + ed25519.SignatureSize
	flags := flagSigned
	if attach {
		body += 2 + len(a.cert.Raw)
		flags |= flagCert
	}
	if uint64(body) > uint64(^uint32(0)) {
		return nil, fmt.Errorf("transport: sign: %w: %d bytes", wire.ErrTooLarge, len(frame))
	}
	out := make([]byte, wire.HeaderSize, wire.HeaderSize+body)
	putHeader(out, flags, body)
	out = append(out, a.keyID[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(a.now().UnixNano()))
	out = append(out, a.sessPub...)
	if attach {
		out = binary.BigEndian.AppendUint16(out, uint16(len(a.cert.Raw)))
		out = append(out, a.cert.Raw...)
	}
	out = append(out, frame...)
	return append(out, ed25519.Sign(a.key, out)...), nil
}

// signedFrame is a decoded signed frame, before its signature is checked.
type signedFrame struct {
	keyID  [KeyIDSize]byte
	at     int64
	sess   []byte // the sender's session key
	cert   []byte // attached certificate, or nil
	inner  []byte
	signed []byte // what the signature covers
	sig    []byte
}

// parseSigned decodes the layout of a signed frame; it checks nothing
// cryptographic. It never panics on arbitrary input.
func parseSigned(raw []byte) (signedFrame, error) {
	flags, n, err := parseHeader(raw, -1)
	if err != nil {
		return signedFrame{}, err
	}
	if flags&flagSigned == 0 || flags&^(flagSigned|flagCert) != 0 {
		return signedFrame{}, fmt.Errorf("%w: not a signed frame (flags %#x)", wire.ErrMalformed, flags)
	}
	body := raw[wire.HeaderSize:]
	if len(body) != n {
		return signedFrame{}, fmt.Errorf("%w: header says %d bytes, got %d", wire.ErrShort, n, len(body))
	}
	if len(body) < signedPrefix+ed25519.SignatureSize {
		return signedFrame{}, fmt.Errorf("%w: signed body of %d bytes, minimum %d", wire.ErrShort, len(body), signedPrefix+ed25519.SignatureSize)
	}
	var f signedFrame
	copy(f.keyID[:], body)
	f.at = int64(binary.BigEndian.Uint64(body[KeyIDSize:]))
	f.sess = body[KeyIDSize+8 : signedPrefix]
	rest := body[signedPrefix : len(body)-ed25519.SignatureSize]
	if flags&flagCert != 0 {
		if len(rest) < 2 {
			return signedFrame{}, fmt.Errorf("%w: no room for the certificate length", wire.ErrShort)
		}
		cl := int(binary.BigEndian.Uint16(rest))
		if cl == 0 || cl > MaxAttachedCert {
			return signedFrame{}, fmt.Errorf("%w: attached certificate of %d bytes (1 to %d)", wire.ErrMalformed, cl, MaxAttachedCert)
		}
		if len(rest) < 2+cl {
			return signedFrame{}, fmt.Errorf("%w: attached certificate of %d bytes, %d left", wire.ErrShort, cl, len(rest)-2)
		}
		f.cert, rest = rest[2:2+cl], rest[2+cl:]
	}
	f.inner = rest
	f.signed = raw[:len(raw)-ed25519.SignatureSize]
	f.sig = raw[len(raw)-ed25519.SignatureSize:]
	return f, nil
}

// Open checks a signed frame and returns its inner frame and the name of
// the certificate that signed it. Failures are refusable errors wrapping
// ErrAuth, whose reason names the cause, or wire errors for frames that
// are not signed hearsay frames at all.
func (a *CertAuth) Open(raw []byte) (inner []byte, name string, err error) {
	inner, pc, _, err := a.open(raw)
	if err != nil {
		return nil, "", err
	}
	return inner, pc.name, nil
}

// open checks a signed or MAC frame; it returns the inner frame, the
// sender's certificate and key id.
func (a *CertAuth) open(raw []byte) ([]byte, *peerCert, [KeyIDSize]byte, error) {
	if len(raw) >= wire.HeaderSize && raw[3] == flagMAC {
		return a.openMAC(raw)
	}
	f, err := parseSigned(raw)
	if err != nil {
		return nil, nil, f.keyID, fmt.Errorf("transport: open signed frame: %w", err)
	}
	inner, pc, err := a.openSigned(f)
	return inner, pc, f.keyID, err
}

func (a *CertAuth) openSigned(f signedFrame) ([]byte, *peerCert, error) {
	now := a.now()
	pc, err := a.lookup(f, now)
	if err != nil {
		a.refused.Add(1)
		return nil, nil, err
	}
	if err := a.checkPeer(pc, now); err != nil {
		return nil, nil, err
	}
	if !ed25519.Verify(pc.pub, f.signed, f.sig) {
		a.refused.Add(1)
		return nil, nil, a.refuse(reasonBadSig, "frame of %q does not verify", pc.name)
	}
	if err := a.checkTime(pc, f.at, now); err != nil {
		return nil, nil, err
	}
	return f.inner, a.learnSession(f.keyID, pc, f.sess), nil
}

// checkPeer refuses the frames of a revoked or expired certificate.
func (a *CertAuth) checkPeer(pc *peerCert, now time.Time) error {
	if a.Revoked != nil && a.Revoked(pc.name) {
		a.refused.Add(1)
		return a.refuse(reasonRevoked, "certificate of %q is revoked", pc.name)
	}
	if now.After(pc.notAfter) || now.Before(pc.notBefore) {
		a.refused.Add(1)
		return a.refuse(reasonExpired, "certificate of %q valid from %s to %s", pc.name, pc.notBefore.UTC().Format(time.RFC3339), pc.notAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkTime refuses a frame made outside the replay window.
func (a *CertAuth) checkTime(pc *peerCert, at int64, now time.Time) error {
	if d := time.Duration(now.UnixNano() - at); d > a.window || d < -a.window {
		a.refused.Add(1)
		return a.refuse(reasonStale, "frame of %q made %v from this node's clock, window %v", pc.name, d, a.window)
	}
	return nil
}

func (a *CertAuth) refuse(reason, format string, args ...any) error {
	return &refusable{reason, fmt.Errorf("%w: %s: %s", ErrAuth, reason, fmt.Sprintf(format, args...))}
}

// lookup finds the frame's certificate in the cache, or verifies the one
// attached and caches it.
func (a *CertAuth) lookup(f signedFrame, now time.Time) (*peerCert, error) {
	a.mu.Lock()
	pc := a.cache[f.keyID]
	a.mu.Unlock()
	if pc != nil {
		return pc, nil
	}
	if f.cert == nil {
		return nil, a.refuse(reasonUnknownCert, "key id %x", f.keyID)
	}
	sum := sha256.Sum256(f.cert)
	if string(sum[:KeyIDSize]) != string(f.keyID[:]) {
		return nil, a.refuse(reasonBadCert, "attached certificate has key id %x, frame says %x", sum[:KeyIDSize], f.keyID)
	}
	c, err := x509.ParseCertificate(f.cert)
	if err != nil {
		return nil, a.refuse(reasonBadCert, "%v", err)
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, a.refuse(reasonBadCert, "key type %s, want Ed25519", c.PublicKeyAlgorithm)
	}
	if err := certs.Verify(c, a.ca, x509.ExtKeyUsageServerAuth, now); err != nil {
		var ua x509.UnknownAuthorityError
		var inv x509.CertificateInvalidError
		switch {
		case now.After(c.NotAfter) || now.Before(c.NotBefore):
			return nil, a.refuse(reasonExpired, "%v", err)
		case errors.As(err, &ua) || errors.As(err, &inv) && inv.Reason == x509.NotAuthorizedToSign:
			return nil, a.refuse(reasonOtherCA, "%v", err)
		case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
			return nil, a.refuse(reasonNotNode, "%v", err)
		}
		if strings.Contains(err.Error(), "not signed by this cluster's CA") {
			return nil, a.refuse(reasonOtherCA, "%v", err)
		}
		return nil, a.refuse(reasonBadCert, "%v", err)
	}
	if certs.CheckName("node", c.Subject.CommonName) != nil {
		return nil, a.refuse(reasonNotNode, "certificate name %q", c.Subject.CommonName)
	}
	if role, err := certs.RoleOf(c); err != nil || role != certs.RoleNone {
		return nil, a.refuse(reasonNotNode, "certificate %q carries a client role", c.Subject.CommonName)
	}
	pc = &peerCert{name: c.Subject.CommonName, pub: pub, notBefore: c.NotBefore, notAfter: c.NotAfter}
	a.verified.Add(1)
	a.mu.Lock()
	if len(a.cache) >= a.max {
		for k := range a.cache { // evict one at random
			delete(a.cache, k)
			break
		}
	}
	a.cache[f.keyID] = pc
	a.mu.Unlock()
	return pc, nil
}

// knownPeers tracks which destinations hold this node's certificate:
// frames to them go without it. A destination is known once this node has
// sent it the certificate and then received an authenticated frame from
// it (its answer, most likely, to a frame that carried the certificate);
// a guess, so a refusal "unknown certificate" from it makes it unknown
// again.
type knownPeers struct {
	mu sync.Mutex
	m  map[string]bool // true: holds it; false: was sent it
}

func (k *knownPeers) has(addr string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[addr]
}

// sent records that a frame to addr carried the certificate.
func (k *knownPeers) sent(addr string) {
	k.set(addr, false)
}

// heard records an authenticated frame from addr.
func (k *knownPeers) heard(addr string) {
	k.mu.Lock()
	sent, ok := k.m[addr]
	k.mu.Unlock()
	if ok && !sent {
		k.set(addr, true)
	}
}

func (k *knownPeers) set(addr string, v bool) {
	if addr == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil || len(k.m) >= maxKnownPeers {
		k.m = map[string]bool{}
	}
	if !k.m[addr] {
		k.m[addr] = v
	}
}

func (k *knownPeers) forget(addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, addr)
}

// attachesCert reports whether a frame carrying env always carries the
// certificate: joins and their replies start a relationship, and their
// receiver may have restarted with an empty cache.
func attachesCert(env *wire.Envelope) bool {
	switch env.Body.(type) {
	case *wire.Envelope_Join, *wire.Envelope_JoinReply:
		return true
	}
	return false
}
