package certs

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"math/big"
	"runtime"
	"sync"
	"time"
)

// nodeIDDomain separates node ids from other hashes of node names.
const nodeIDDomain = "hearsay node id\x00"

// NodeID returns the node id that a node certificate named name binds, in
// a certificate cluster: the first 8 bytes of SHA-256 over a domain string
// and the name, big endian, never zero. A record's version names its
// origin by this id, so a verifier finds the origin's certificate from the
// version alone, and no node can write under another's id.
func NodeID(name string) uint64 {
	sum := sha256.Sum256([]byte(nodeIDDomain + name))
	id := binary.BigEndian.Uint64(sum[:8])
	if id == 0 {
		id = 1
	}
	return id
}

// Identity is a node's signing identity in a certificate cluster: its
// certificate and key, and the CA that checks its peers' certificates. It
// implements engine.Signer.
type Identity struct {
	node Node
	id   uint64
}

// NewIdentity returns n's signing identity.
func NewIdentity(n Node) *Identity {
	return &Identity{node: n, id: NodeID(n.Name())}
}

// Name is the node's name, its certificate's CN.
func (i *Identity) Name() string { return i.node.Name() }

// NodeID is the node id the certificate binds (see NodeID).
func (i *Identity) NodeID() uint64 { return i.id }

// NodeIDOf returns the node id of the node named name (see NodeID).
func (i *Identity) NodeIDOf(name string) uint64 { return NodeID(name) }

// Cert is the node's certificate, DER-encoded.
func (i *Identity) Cert() []byte { return i.node.Cert.Raw }

// Sign returns the node's Ed25519 signature over msg.
func (i *Identity) Sign(msg []byte) []byte { return ed25519.Sign(i.node.Key, msg) }

// parallelSignMin is the smallest batch SignBatch spreads over cores.
const parallelSignMin = 8

// SignBatch signs each of msgs, spread over GOMAXPROCS goroutines for a
// batch of parallelSignMin or more: the runtime's event loop signs a whole
// batch of local writes at once (engine.BatchSigner), and a signature
// costs more than the rest of a write.
func (i *Identity) SignBatch(msgs [][]byte) [][]byte {
	sigs := make([][]byte, len(msgs))
	workers := min(runtime.GOMAXPROCS(0), len(msgs)/parallelSignMin+1)
	if workers <= 1 {
		for k, m := range msgs {
			sigs[k] = ed25519.Sign(i.node.Key, m)
		}
		return sigs
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < len(msgs); k += workers {
				sigs[k] = ed25519.Sign(i.node.Key, msgs[k])
			}
		}()
	}
	wg.Wait()
	return sigs
}

// CheckCert verifies a node certificate (DER) against the CA at now: it is
// signed by the CA, valid at now, a node certificate (usable to serve: a
// client certificate is not), with a valid node name. It returns the node
// id and name the certificate binds and its public key.
func (i *Identity) CheckCert(now time.Time, der []byte) (uint64, string, ed25519.PublicKey, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return 0, "", nil, fmt.Errorf("node certificate: %w", err)
	}
	key, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return 0, "", nil, fmt.Errorf("node certificate %q: not an Ed25519 key", c.Subject.CommonName)
	}
	if err := Verify(c, i.node.CA, x509.ExtKeyUsageServerAuth, now); err != nil {
		return 0, "", nil, err
	}
	name := c.Subject.CommonName
	if err := CheckName("node", name); err != nil {
		return 0, "", nil, err
	}
	return NodeID(name), name, key, nil
}

// MemoryCA is a cluster CA held in memory and derived from a seed, for the
// simulator and tests: the same seed gives the same CA and node
// certificates, byte for byte.
type MemoryCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	seed uint64
	now  time.Time
}

// NewMemoryCA returns the CA of seed, valid from an hour before now for
// ten years.
func NewMemoryCA(seed uint64, now time.Time) (*MemoryCA, error) {
	ca := &MemoryCA{key: ed25519.NewKeyFromSeed(derive(seed, "ca")), seed: seed, now: now}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(DefaultCAValidity),
		Subject:               pkix.Name{CommonName: "hearsay CA", Organization: []string{"hearsay"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	cert, err := sign(tmpl, ca.key.Public().(ed25519.PublicKey), tmpl, ca.key)
	if err != nil {
		return nil, fmt.Errorf("memory CA: %w", err)
	}
	ca.cert = cert
	return ca, nil
}

// Cert is the CA's certificate.
func (ca *MemoryCA) Cert() *x509.Certificate { return ca.cert }

// Node returns node name's identity under this CA: its key derived from
// the CA's seed and the name.
func (ca *MemoryCA) Node(name string) (Node, error) {
	if err := CheckName("node", name); err != nil {
		return Node{}, err
	}
	key := ed25519.NewKeyFromSeed(derive(ca.seed, "node\x00"+name))
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetUint64(NodeID(name)),
		NotBefore:    ca.now.Add(-time.Hour),
		NotAfter:     ca.now.Add(DefaultCAValidity - time.Hour),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"hearsay"}},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
	}
	cert, err := sign(tmpl, key.Public().(ed25519.PublicKey), ca.cert, ca.key)
	if err != nil {
		return Node{}, fmt.Errorf("memory CA: node %s: %w", name, err)
	}
	return Node{CA: ca.cert, Pair: Pair{Cert: cert, Key: key}}, nil
}

// derive returns a 32-byte key seed for label under seed.
func derive(seed uint64, label string) []byte {
	b := binary.BigEndian.AppendUint64([]byte("hearsay memory CA\x00"), seed)
	sum := sha256.Sum256(append(b, label...))
	return sum[:]
}
