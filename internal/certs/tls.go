package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Node is a node's identity: the cluster CA and the node's own pair.
type Node struct {
	CA *x509.Certificate
	Pair
}

// Name is the node's name, its certificate's CN.
func (n Node) Name() string { return n.Cert.Subject.CommonName }

// TLSCertificate returns the node's pair for a tls.Config.
func (n Node) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{n.Cert.Raw}, PrivateKey: n.Key, Leaf: n.Cert}
}

// Pool returns a pool holding the CA alone.
func (n Node) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(n.CA)
	return pool
}

// LoadNode reads and checks dir's ca.crt, node.crt and node.key: the key
// is node.crt's, and node.crt is valid at now and signed by ca.crt for
// serving. Errors name the file at fault.
func LoadNode(dir string, now time.Time) (Node, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return Node{}, err
	}
	p, err := LoadPair(dir, NodeCert, NodeKey, ca, x509.ExtKeyUsageServerAuth, now)
	if err != nil {
		return Node{}, err
	}
	if err := CheckName("node", p.Cert.Subject.CommonName); err != nil {
		return Node{}, fmt.Errorf("%s: %w", filepath.Join(dir, NodeCert), err)
	}
	return Node{CA: ca, Pair: p}, nil
}

// PickClient returns the client name to use in dir: name if given, else
// the only client certificate there, else "root" if there is one.
func PickClient(dir, name string) (string, error) {
	if name != "" {
		if err := CheckName("client", name); err != nil {
			return "", err
		}
		return name, nil
	}
	names, err := ClientNames(dir)
	if err != nil {
		return "", err
	}
	switch {
	case len(names) == 1:
		return names[0], nil
	case len(names) == 0:
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("certs directory: %w", err)
		}
		return "", fmt.Errorf("no client certificate (client.NAME.crt) in %s: create one with hearsay cert create-client --certs-dir %s --name NAME --role read|write|admin", dir, dir)
	}
	for _, n := range names {
		if n == "root" {
			return n, nil
		}
	}
	return "", fmt.Errorf("%s holds client certificates %s: choose one with --cert-name", dir, strings.Join(names, ", "))
}

// ClientTLS returns the TLS configuration of a client of the HTTP API:
// TLS 1.3, presenting client.NAME.crt of dir, trusting only dir's ca.crt.
func ClientTLS(dir, name string, now time.Time) (*tls.Config, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	p, err := LoadPair(dir, ClientCert(name), ClientKey(name), ca, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{p.Cert.Raw}, PrivateKey: p.Key, Leaf: p.Cert}},
	}, nil
}
