package hearsay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/certs"
	"github.com/hearsaydb/hearsay/internal/transport"
	"github.com/hearsaydb/hearsay/store"
)

// Errors of certificate clusters.
var (
	// ErrReservedKey is returned by Put and Delete for a key under the
	// prefix the cluster keeps for itself ("\x00hearsay/", see
	// engine.ReservedPrefix). The agent answers 400.
	ErrReservedKey = errors.New("hearsay: reserved key")
	// ErrNoCertificates is returned by Revoke on a node without
	// Config.Identity.
	ErrNoCertificates = errors.New("hearsay: this node has no certificates (--certs-dir)")
	// ErrBadRevocation is returned by Revoke for a revocation that does
	// not decode or is not signed by the cluster's CA.
	ErrBadRevocation = certs.ErrRevocation
)

// nodeCerts is a node's certificate identity: what signs and checks its
// gossip, and the revocations it knows.
type nodeCerts struct {
	id      certs.Node
	auth    *transport.CertAuth
	revoked *certs.RevocationList
	// clients are the revoked client names: the agent refuses their
	// certificates on every request.
	clients *certs.RevocationList
	log     *slog.Logger
}

// loadCerts makes the transport's certificate authentication and the
// revocation list of a node with an Identity, already checked (signer).
func loadCerts(cfg Config, log *slog.Logger) (*nodeCerts, error) {
	id := certs.Node{CA: cfg.Identity.CA, Pair: certs.Pair{Cert: cfg.Identity.Cert, Key: cfg.Identity.Key}}
	auth, err := transport.NewCertAuth(transport.CertAuthConfig{CA: id.CA, Cert: id.Cert, Key: id.Key})
	if err != nil {
		return nil, fmt.Errorf("hearsay: %w", err)
	}
	c := &nodeCerts{id: id, auth: auth, revoked: certs.NewRevocationList(cfg.MaxRevocations),
		clients: certs.NewRevocationList(cfg.MaxRevocations), log: log}
	auth.Revoked = func(name string) bool {
		_, ok := c.revoked.Revoked(name)
		return ok
	}
	return c, nil
}

// transportAuth returns the transport's authenticator; nil without
// certificates.
func (c *nodeCerts) transportAuth() *transport.CertAuth {
	if c == nil {
		return nil
	}
	return c.auth
}

// checkReserved is the engine's Config.CheckReserved in a certificate
// cluster: the only reserved records are revocations of nodes
// (engine.RevokedPrefix + name) and of clients (engine.RevokedClientPrefix
// + name), which must be signed by the CA, be of the kind and name their
// key says, and are never deleted. An accepted one is added to its
// revocation list: the transport consults the nodes' for every frame, the
// agent the clients' for every request.
func (c *nodeCerts) checkReserved(key, value []byte, tombstone bool) error {
	list, client := c.revoked, false
	name, ok := bytes.CutPrefix(key, engine.RevokedPrefix)
	if !ok {
		if name, ok = bytes.CutPrefix(key, engine.RevokedClientPrefix); !ok {
			return errors.New("no such reserved key in a certificate cluster")
		}
		list, client = c.clients, true
	}
	if tombstone {
		return errors.New("a revocation cannot be deleted")
	}
	r, err := certs.ParseRevocation(value, c.id.CA)
	if err != nil {
		return err
	}
	if r.Name != string(name) || r.Client != client {
		return fmt.Errorf("revocation of %s %q stored under the key of %q", revocationKind(r), r.Name, key)
	}
	if !list.Add(r) {
		if _, ok := list.Revoked(r.Name); !ok {
			return fmt.Errorf("revocation list full (%d names)", list.Len())
		}
		return nil
	}
	if client {
		if c.log != nil {
			c.log.Warn("client certificate revoked: every request with a certificate of that name is refused", "client", r.Name, "revoked_at", r.At)
		}
		return nil
	}
	if r.Name == c.id.Name() && c.log != nil {
		c.log.Error("this node's certificate was revoked: every member refuses its messages; it needs a new certificate under a new name", "revoked_at", r.At)
	}
	return nil
}

// revocationKind is "node" or "client".
func revocationKind(r certs.Revocation) string {
	if r.Client {
		return "client"
	}
	return "node"
}

// loadRevocations reads the revocations kept in the store, at start, and
// returns the revoked node names.
func (c *nodeCerts) loadRevocations(st store.Store) ([]string, error) {
	var names []string
	for _, prefix := range [][]byte{engine.RevokedPrefix, engine.RevokedClientPrefix} {
		err := st.Scan(prefix, nil, func(r store.Record) bool {
			if r.Tombstone {
				return true
			}
			if c.checkReserved(r.Key, r.Value, false) == nil && bytes.Equal(prefix, engine.RevokedPrefix) {
				names = append(names, string(r.Key[len(prefix):]))
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("hearsay: load revocations: %w", err)
		}
	}
	return names, nil
}

// Revoke spreads a revocation (certs.Revocation, made and signed with the
// CA's key by hearsay cert revoke) to the cluster: checked against the
// CA, it is written under the reserved key of the node or client it names
// and replicates like a record; every member that receives it checks it
// again. A node's revocation marks the node revoked and has its frames
// refused; a client's has every agent refuse that client's certificates
// (ClientRevoked). It returns the record's version once it is durable
// here.
func (n *Node) Revoke(ctx context.Context, revocation []byte) (Version, error) {
	if n.certs == nil {
		return Version{}, ErrNoCertificates
	}
	r, err := certs.ParseRevocation(revocation, n.certs.id.CA)
	if err != nil {
		return Version{}, fmt.Errorf("hearsay: revoke: %w", err)
	}
	if r.Client {
		return n.write(ctx, engine.RevokedClientKey(r.Name), revocation, false)
	}
	if r.Name == n.cfg.Name {
		return Version{}, fmt.Errorf("hearsay: revoke: %w: %q is this node; send the revocation to another member", ErrBadRevocation, r.Name)
	}
	return n.write(ctx, engine.RevokedKey(r.Name), revocation, false)
}

// Revoked reports whether the node name's certificate is revoked, and from
// when: a record that name signed after at must be refused. False on a
// node without certificates.
func (n *Node) Revoked(name string) (at time.Time, ok bool) {
	if n.certs == nil {
		return time.Time{}, false
	}
	return n.certs.revoked.Revoked(name)
}

// ClientRevoked reports whether client certificates named name are
// revoked (hearsay cert revoke --client), and from when. False on a node
// without certificates.
func (n *Node) ClientRevoked(name string) (at time.Time, ok bool) {
	if n.certs == nil {
		return time.Time{}, false
	}
	return n.certs.clients.Revoked(name)
}

// Revocation is a revoked node or client name this node knows
// (Node.Revocations).
type Revocation struct {
	// Name is the node's or the client's name.
	Name string `json:"name"`
	// Client is set for a client certificate's name.
	Client bool `json:"client,omitempty"`
	// At is when the revocation took effect.
	At time.Time `json:"at"`
}

// Revocations returns the revoked node names, then the revoked client
// names, each sorted. Empty on a node without certificates.
func (n *Node) Revocations() []Revocation {
	if n.certs == nil {
		return nil
	}
	var out []Revocation
	for _, l := range []struct {
		list   *certs.RevocationList
		client bool
	}{{n.certs.revoked, false}, {n.certs.clients, true}} {
		for _, name := range l.list.Names() {
			if at, ok := l.list.Revoked(name); ok {
				out = append(out, Revocation{Name: name, Client: l.client, At: at})
			}
		}
	}
	return out
}

// checkClientKey refuses the reserved keys to Put and Delete.
func checkClientKey(key []byte) error {
	if engine.IsReserved(key) {
		return fmt.Errorf("%w %q: keys starting with %q belong to the cluster", ErrReservedKey, key, engine.ReservedPrefix)
	}
	return nil
}

var (
	descCertsVerified = desc("transport_certificates_verified_total", "Peer node certificates verified against the CA (then cached).")
	descCertsCached   = desc("transport_certificates_cached", "Verified peer node certificates cached (bounded).")
	descCertsAttached = desc("transport_certificates_attached_total", "Frames sent with this node's certificate attached.")
	descRevocations   = desc("revocations", "Revoked node names known (bounded by MaxRevocations).")
	descClientRevs    = desc("revoked_clients", "Revoked client certificate names known (bounded by MaxRevocations).")
	descSessionFrames = desc("transport_session_frames_total", "Frames sent authenticated with a session key (HMAC) instead of a signature.")
)

// certCollector exports the certificate metrics.
type certCollector struct{ n *Node }

func (c certCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCertsVerified, descCertsCached, descCertsAttached, descRevocations, descClientRevs, descSessionFrames} {
		ch <- d
	}
}

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.n.tr.Stats()
	ch <- prometheus.MustNewConstMetric(descCertsVerified, prometheus.CounterValue, float64(t.CertsVerified))
	ch <- prometheus.MustNewConstMetric(descCertsCached, prometheus.GaugeValue, float64(t.CertsCached))
	ch <- prometheus.MustNewConstMetric(descCertsAttached, prometheus.CounterValue, float64(t.CertsAttached))
	ch <- prometheus.MustNewConstMetric(descRevocations, prometheus.GaugeValue, float64(c.n.certs.revoked.Len()))
	ch <- prometheus.MustNewConstMetric(descClientRevs, prometheus.GaugeValue, float64(c.n.certs.clients.Len()))
	ch <- prometheus.MustNewConstMetric(descSessionFrames, prometheus.CounterValue, float64(t.SessionFrames))
}
