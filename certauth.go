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
	c := &nodeCerts{id: id, auth: auth, revoked: certs.NewRevocationList(cfg.MaxRevocations), log: log}
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
// cluster: the only reserved records are revocations
// (engine.RevokedPrefix + name), which must be signed by the CA, name the
// node their key names, and are never deleted. An accepted one is added to
// the revocation list, which the transport consults for every frame.
func (c *nodeCerts) checkReserved(key, value []byte, tombstone bool) error {
	name, ok := bytes.CutPrefix(key, engine.RevokedPrefix)
	if !ok {
		return errors.New("no such reserved key in a certificate cluster")
	}
	if tombstone {
		return errors.New("a revocation cannot be deleted")
	}
	r, err := certs.ParseRevocation(value, c.id.CA)
	if err != nil {
		return err
	}
	if r.Name != string(name) {
		return fmt.Errorf("revocation of %q stored under the key of %q", r.Name, name)
	}
	if !c.revoked.Add(r) {
		if _, ok := c.revoked.Revoked(r.Name); !ok {
			return fmt.Errorf("revocation list full (%d names)", c.revoked.Len())
		}
		return nil
	}
	if r.Name == c.id.Name() && c.log != nil {
		c.log.Error("this node's certificate was revoked: every member refuses its messages; it needs a new certificate under a new name", "revoked_at", r.At)
	}
	return nil
}

// loadRevocations reads the revocations kept in the store, at start.
func (c *nodeCerts) loadRevocations(st store.Store) ([]string, error) {
	var names []string
	err := st.Scan(engine.RevokedPrefix, nil, func(r store.Record) bool {
		if r.Tombstone {
			return true
		}
		if c.checkReserved(r.Key, r.Value, false) == nil {
			names = append(names, string(r.Key[len(engine.RevokedPrefix):]))
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("hearsay: load revocations: %w", err)
	}
	return names, nil
}

// Revoke spreads a revocation (certs.Revocation, made and signed with the
// CA's key by hearsay cert revoke) to the cluster: checked against the
// CA, it is written under the reserved key of the node it names and
// replicates like a record; every member that receives it checks it again,
// marks the node revoked and refuses its frames. It returns the record's
// version once it is durable here.
func (n *Node) Revoke(ctx context.Context, revocation []byte) (Version, error) {
	if n.certs == nil {
		return Version{}, ErrNoCertificates
	}
	r, err := certs.ParseRevocation(revocation, n.certs.id.CA)
	if err != nil {
		return Version{}, fmt.Errorf("hearsay: revoke: %w", err)
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
	descSessionFrames = desc("transport_session_frames_total", "Frames sent authenticated with a session key (HMAC) instead of a signature.")
)

// certCollector exports the certificate metrics.
type certCollector struct{ n *Node }

func (c certCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCertsVerified, descCertsCached, descCertsAttached, descRevocations, descSessionFrames} {
		ch <- d
	}
}

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.n.tr.Stats()
	ch <- prometheus.MustNewConstMetric(descCertsVerified, prometheus.CounterValue, float64(t.CertsVerified))
	ch <- prometheus.MustNewConstMetric(descCertsCached, prometheus.GaugeValue, float64(t.CertsCached))
	ch <- prometheus.MustNewConstMetric(descCertsAttached, prometheus.CounterValue, float64(t.CertsAttached))
	ch <- prometheus.MustNewConstMetric(descRevocations, prometheus.GaugeValue, float64(c.n.certs.revoked.Len()))
	ch <- prometheus.MustNewConstMetric(descSessionFrames, prometheus.CounterValue, float64(t.SessionFrames))
}
