package hearsay

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/wire"
	"github.com/hearsaydb/hearsay/store"
)

// Identity makes a node a member of a certificate cluster: its node
// certificate and key, and the cluster CA's certificate (as `hearsay cert
// create-ca` and `create-node` make them). In a certificate cluster every
// record carries its origin's Ed25519 signature, and every node verifies
// the signature of every record it receives, whatever path it came by,
// against the origin's certificate, itself checked against the CA: no
// node can alter another's write or write under its name. The node's name
// is the certificate's CN, and its node id is derived from that name
// (NodeIDOf). Nodes with an Identity and nodes without refuse each other.
type Identity struct {
	CA   *x509.Certificate
	Cert *x509.Certificate
	Key  ed25519.PrivateKey
}

// LoadIdentity reads and checks a certs directory's ca.crt, node.crt and
// node.key: the key is the certificate's, and the certificate is valid now
// and signed by the CA. Errors name the file at fault.
func LoadIdentity(dir string) (*Identity, error) {
	n, err := certs.LoadNode(dir, time.Now())
	if err != nil {
		return nil, fmt.Errorf("hearsay: identity: %w", err)
	}
	return &Identity{CA: n.CA, Cert: n.Cert, Key: n.Key}, nil
}

// tamperSend, when set (only by test builds with the faultinject tag,
// forgeinject.go), alters every envelope before it is sent: how a
// real-process test makes a forger.
var tamperSend func(env *wire.Envelope)

// NodeIDOf returns the node id a certificate cluster gives the node named
// name: the first 8 bytes of SHA-256 over a domain string and the name.
func NodeIDOf(name string) uint64 { return certs.NodeID(name) }

// signer checks id at now against the node's name and returns the engine's
// signer for it.
func (id *Identity) signer(name string, now time.Time) (*certs.Identity, error) {
	if id.CA == nil || id.Cert == nil || len(id.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("hearsay: config: Identity needs CA, Cert and an Ed25519 Key")
	}
	pub, ok := id.Cert.PublicKey.(ed25519.PublicKey)
	if !ok || !bytes.Equal(pub, id.Key.Public().(ed25519.PublicKey)) {
		return nil, errors.New("hearsay: config: Identity.Key is not the key of Identity.Cert")
	}
	if err := certs.Verify(id.Cert, id.CA, x509.ExtKeyUsageServerAuth, now); err != nil {
		return nil, fmt.Errorf("hearsay: config: Identity: %w", err)
	}
	n := certs.Node{CA: id.CA, Pair: certs.Pair{Cert: id.Cert, Key: id.Key}}
	if n.Name() != name {
		return nil, fmt.Errorf("hearsay: config: Name %q is not the node certificate's name %q", name, n.Name())
	}
	if err := certs.CheckName("node", name); err != nil {
		return nil, fmt.Errorf("hearsay: config: Identity: %w", err)
	}
	return certs.NewIdentity(n), nil
}

// bindNodeID returns the node id of a certificate cluster's node, keeping
// it in the store. A data directory that holds another id (it was created
// without certificates, or under another name) is refused: the id breaks
// ties between versions and names every record's origin, so a node's
// records would otherwise carry two ids, and those under the old one could
// not be verified.
func bindNodeID(st store.Store, want uint64, dataDir string) (uint64, error) {
	v, ok, err := st.GetMeta([]byte(metaNodeID))
	if err != nil {
		return 0, fmt.Errorf("hearsay: read node id: %w", err)
	}
	if ok {
		if len(v) == 8 && bytesToID(v) == want {
			return want, nil
		}
		where := "the store"
		if dataDir != "" {
			where = "data directory " + dataDir
		}
		return 0, fmt.Errorf("hearsay: %s belongs to node id %x, but in a certificate cluster this node's id is %016x (derived from its certificate's name): it was created without certificates or under another name; start this node with a new data directory (it catches up from its peers), or without certificates", where, v, want)
	}
	if err := st.SetMeta([]byte(metaNodeID), idToBytes(want)); err != nil {
		return 0, fmt.Errorf("hearsay: write node id: %w", err)
	}
	return want, nil
}
