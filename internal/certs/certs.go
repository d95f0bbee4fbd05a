// Package certs creates, loads and checks the certificates of a hearsay
// cluster: one certificate authority, a certificate per node and a
// certificate per client, in one directory with fixed file names (after
// CockroachDB's certs directory):
//
//	ca.crt                 the cluster CA (every node and client has it)
//	ca.key                 the CA's key (only where certificates are made)
//	node.crt, node.key     this node: CN = node name, SANs = its hosts
//	client.NAME.crt/.key   a client: CN = NAME, role in the subject's OU
//
// Every key is Ed25519 (crypto/ed25519, certificates by crypto/x509); keys
// are written with mode 0600 and certificates with 0644. A client's role is
// the subject's organizational unit "role:read", "role:write" or
// "role:admin", exactly one of them (see RoleOf); a node certificate has no
// role.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names in a certs directory.
const (
	CACert   = "ca.crt"
	CAKey    = "ca.key"
	NodeCert = "node.crt"
	NodeKey  = "node.key"
)

// ClientCert returns the file name of client name's certificate,
// "client.NAME.crt".
func ClientCert(name string) string { return "client." + name + ".crt" }

// ClientKey returns the file name of client name's key, "client.NAME.key".
func ClientKey(name string) string { return "client." + name + ".key" }

// Default validities.
const (
	// DefaultCAValidity is ten years: the CA outlives many node and client
	// certificates, and replacing it means re-issuing them all.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity is two years for node and client certificates.
	DefaultCertValidity = 2 * 365 * 24 * time.Hour
	// backdate starts a certificate's validity an hour early, so that a
	// peer whose clock is a little behind accepts a fresh certificate.
	backdate = time.Hour
)

// Modes of written files.
const (
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
	DirMode  fs.FileMode = 0o700
)

// Role is what a client certificate allows on the HTTP API. Each role
// includes the ones below it.
type Role int

// Roles, lowest first. RoleNone is a certificate without a role (a node's)
// and what unauthenticated routes require.
const (
	RoleNone Role = iota
	// RoleRead reads: get, scan, watch, members, status, metrics.
	RoleRead
	// RoleWrite also writes: put and delete.
	RoleWrite
	// RoleAdmin also runs administrative operations (keys, revocations).
	RoleAdmin
)

// RolePrefix starts the organizational unit that carries a client's role.
const RolePrefix = "role:"

// String returns the role's name: read, write, admin, or none.
func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	case RoleAdmin:
		return "admin"
	case RoleNone:
		return "none"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole parses read, write or admin.
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "write":
		return RoleWrite, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q: want read, write or admin", s)
}

// RoleOf returns the role a certificate carries: its subject's one
// organizational unit "role:NAME". A certificate with no such unit has
// RoleNone; one with two, or an unknown role, is an error (it was not made
// by hearsay cert, and guessing could grant too much).
func RoleOf(c *x509.Certificate) (Role, error) {
	role, found := RoleNone, false
	for _, ou := range c.Subject.OrganizationalUnit {
		name, ok := strings.CutPrefix(ou, RolePrefix)
		if !ok {
			continue
		}
		if found {
			return RoleNone, fmt.Errorf("certificate %q names more than one role", c.Subject.CommonName)
		}
		r, err := ParseRole(name)
		if err != nil {
			return RoleNone, fmt.Errorf("certificate %q: %w", c.Subject.CommonName, err)
		}
		role, found = r, true
	}
	return role, nil
}

// CheckName checks a node or client name: 1 to 64 letters, digits, '.',
// '-' or '_', starting with a letter or digit. Names become file names
// (client.NAME.crt) and certificate subjects, so nothing else is allowed.
func CheckName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	if len(name) > 64 {
		return fmt.Errorf("%s name %.20q...: longer than 64 characters", kind, name)
	}
	for i, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '.' || c == '-' || c == '_')
		if !ok {
			return fmt.Errorf("%s name %q: use letters, digits, '.', '-' and '_', starting with a letter or digit", kind, name)
		}
	}
	return nil
}

// Options are the settings of the Create functions.
type Options struct {
	// Dir is the certs directory; it is created (mode 0700) if missing.
	Dir string
	// CAKeyFile is the CA's key, for CreateNode and CreateClient. Empty:
	// Dir/ca.key.
	CAKeyFile string
	// Validity is how long the new certificate is valid. Zero: the default
	// for its kind.
	Validity time.Duration
	// Overwrite replaces existing files; without it Create refuses them.
	Overwrite bool
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) caKeyFile() string {
	if o.CAKeyFile != "" {
		return o.CAKeyFile
	}
	return filepath.Join(o.Dir, CAKey)
}

// CreateCA makes a new CA key and self-signed certificate, Dir/ca.key and
// Dir/ca.crt (or CAKeyFile for the key).
func CreateCA(o Options) (*x509.Certificate, error) {
	keyFile := o.caKeyFile()
	certFile := filepath.Join(o.Dir, CACert)
	if err := o.prepare(certFile, keyFile); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create CA: generate key: %w", err)
	}
	tmpl, err := template(o, DefaultCAValidity)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	tmpl.Subject = pkix.Name{CommonName: "hearsay CA", Organization: []string{"hearsay"}}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true // the CA signs leaves only
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	cert, err := sign(tmpl, pub, tmpl, priv)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	if err := o.writePair(certFile, cert.Raw, keyFile, priv); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	return cert, nil
}

// CreateNode makes node name's key and certificate, Dir/node.key and
// Dir/node.crt, signed by the CA in Dir. The certificate serves the HTTP
// API (and later gossip) for hosts, DNS names or IP addresses; with none,
// localhost, 127.0.0.1 and ::1. Its CN is the node's name.
func CreateNode(o Options, name string, hosts []string) (*x509.Certificate, error) {
	if err := CheckName("node", name); err != nil {
		return nil, fmt.Errorf("create node certificate: %w", err)
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	tmpl, err := template(o, DefaultCertValidity)
	if err != nil {
		return nil, fmt.Errorf("create node certificate: %w", err)
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if err := checkHost(h); err != nil {
			return nil, fmt.Errorf("create node certificate: --host %q: %w", h, err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	tmpl.Subject = pkix.Name{CommonName: name, Organization: []string{"hearsay"}}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	cert, err := o.createLeaf(tmpl, filepath.Join(o.Dir, NodeCert), filepath.Join(o.Dir, NodeKey))
	if err != nil {
		return nil, fmt.Errorf("create node certificate: %w", err)
	}
	return cert, nil
}

// CreateClient makes client name's key and certificate with role,
// Dir/client.NAME.key and Dir/client.NAME.crt, signed by the CA in Dir.
func CreateClient(o Options, name string, role Role) (*x509.Certificate, error) {
	if err := CheckName("client", name); err != nil {
		return nil, fmt.Errorf("create client certificate: %w", err)
	}
	if role < RoleRead || role > RoleAdmin {
		return nil, fmt.Errorf("create client certificate %q: role %v: want read, write or admin", name, role)
	}
	tmpl, err := template(o, DefaultCertValidity)
	if err != nil {
		return nil, fmt.Errorf("create client certificate: %w", err)
	}
	tmpl.Subject = pkix.Name{
		CommonName:         name,
		Organization:       []string{"hearsay"},
		OrganizationalUnit: []string{RolePrefix + role.String()},
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cert, err := o.createLeaf(tmpl, filepath.Join(o.Dir, ClientCert(name)), filepath.Join(o.Dir, ClientKey(name)))
	if err != nil {
		return nil, fmt.Errorf("create client certificate %q: %w", name, err)
	}
	return cert, nil
}

// checkHost checks a DNS name for a certificate (a leading "*." allowed).
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if len(h) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(strings.TrimPrefix(h, "*."), ".") {
		if label == "" || len(label) > 63 {
			return errors.New("not a DNS name or IP address")
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return errors.New("not a DNS name or IP address")
			}
		}
	}
	return nil
}

// createLeaf signs tmpl with the CA of o.Dir under a new key and writes
// the pair.
func (o Options) createLeaf(tmpl *x509.Certificate, certFile, keyFile string) (*x509.Certificate, error) {
	if err := o.prepare(certFile, keyFile); err != nil {
		return nil, err
	}
	ca, err := LoadCA(o.Dir)
	if err != nil {
		return nil, err
	}
	caKey, err := loadKey(o.caKeyFile())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (the CA's key is needed to sign; create the CA with: hearsay cert create-ca --certs-dir %s, or name its key with --ca-key)", err, o.Dir)
		}
		return nil, err
	}
	if !bytes.Equal(caKey.Public().(ed25519.PublicKey), ca.PublicKey.(ed25519.PublicKey)) {
		return nil, fmt.Errorf("CA key %s does not belong to %s", o.caKeyFile(), filepath.Join(o.Dir, CACert))
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		return nil, fmt.Errorf("the certificate would outlive the CA (which expires %s): ask for a shorter --lifetime", ca.NotAfter.Format(time.DateOnly))
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	cert, err := sign(tmpl, pub, ca, caKey)
	if err != nil {
		return nil, err
	}
	if err := o.writePair(certFile, cert.Raw, keyFile, priv); err != nil {
		return nil, err
	}
	return cert, nil
}

// template returns a certificate template with a random serial number and
// the validity o asks for (def when zero).
func template(o Options, def time.Duration) (*x509.Certificate, error) {
	validity := o.Validity
	if validity == 0 {
		validity = def
	}
	if validity < 0 {
		return nil, fmt.Errorf("lifetime %v: must be positive", validity)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	now := o.now()
	return &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
	}, nil
}

func sign(tmpl *x509.Certificate, pub ed25519.PublicKey, parent *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the new certificate: %w", err)
	}
	return cert, nil
}

// prepare creates o.Dir if needed and, without Overwrite, refuses files
// that exist.
func (o Options) prepare(files ...string) error {
	if o.Dir == "" {
		return errors.New("no certs directory (--certs-dir)")
	}
	if err := os.MkdirAll(o.Dir, DirMode); err != nil {
		return fmt.Errorf("certs directory: %w", err)
	}
	if o.Overwrite {
		return nil
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%s exists; pass --overwrite to replace it", f)
		}
	}
	return nil
}

// writePair writes the key (0600) and then the certificate (0644).
func (o Options) writePair(certFile string, der []byte, keyFile string, key ed25519.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), KeyMode, o.Overwrite); err != nil {
		return err
	}
	if err := writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), CertMode, o.Overwrite); err != nil {
		if !o.Overwrite {
			_ = os.Remove(keyFile) // a key without its certificate is of no use
		}
		return err
	}
	return nil
}

// writeFile writes data to a temporary file in path's directory with mode,
// syncs it and moves it into place: by rename when overwriting, by link
// otherwise, so that an existing file is never replaced unasked and no
// reader sees half a file.
func writeFile(path string, data []byte, mode fs.FileMode, overwrite bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if overwrite {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path)
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; pass --overwrite to replace it", path)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadCA reads and checks Dir/ca.crt: a CA certificate with an Ed25519
// key.
func LoadCA(dir string) (*x509.Certificate, error) {
	path := filepath.Join(dir, CACert)
	cert, err := loadCert(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (create the CA with: hearsay cert create-ca --certs-dir %s, or copy ca.crt there)", err, dir)
		}
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("%s is not a CA certificate", path)
	}
	return cert, nil
}

// loadCert reads one PEM certificate with an Ed25519 key.
func loadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	cert, err := ParseCert(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// ParseCert parses one PEM "CERTIFICATE" block holding an Ed25519
// certificate; anything else in data is an error.
func ParseCert(data []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data: not a certificate file")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("data after the certificate (one certificate per file)")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a valid certificate: %w", err)
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("wrong key type %s: hearsay certificates are Ed25519 (make them with hearsay cert)", cert.PublicKeyAlgorithm)
	}
	return cert, nil
}

// loadKey reads a PEM PKCS #8 Ed25519 private key.
func loadKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParseKey parses one PEM "PRIVATE KEY" block (PKCS #8) holding an Ed25519
// key.
func ParseKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data: not a key file")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY (PKCS #8)", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a valid PKCS #8 key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("wrong key type %T: hearsay keys are Ed25519 (make them with hearsay cert)", k)
	}
	return key, nil
}

// Pair is a loaded and checked certificate with its key.
type Pair struct {
	Cert *x509.Certificate
	Key  ed25519.PrivateKey
}

// LoadPair reads certFile and keyFile in dir and checks them: the key is
// the certificate's, the certificate is valid at now and signed by ca for
// usage. Errors name the file at fault.
func LoadPair(dir, certFile, keyFile string, ca *x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (Pair, error) {
	certPath, keyPath := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	cert, err := loadCert(certPath)
	if err != nil {
		return Pair{}, err
	}
	key, err := loadKey(keyPath)
	if err != nil {
		return Pair{}, err
	}
	if !bytes.Equal(key.Public().(ed25519.PublicKey), cert.PublicKey.(ed25519.PublicKey)) {
		return Pair{}, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	if err := Verify(cert, ca, usage, now); err != nil {
		return Pair{}, fmt.Errorf("%s: %w", certPath, err)
	}
	return Pair{Cert: cert, Key: key}, nil
}

// Verify checks that cert is valid at now, signed by ca and allowed for
// usage. Its errors say which of these failed.
func Verify(cert, ca *x509.Certificate, usage x509.ExtKeyUsage, now time.Time) error {
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate %q expired on %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate %q is not valid before %s (is this clock right?)", cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(ca.NotAfter) {
		return fmt.Errorf("the CA certificate expired on %s", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err == nil {
		return nil
	}
	var ua x509.UnknownAuthorityError
	var inv x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("certificate %q is not signed by this cluster's CA (%s): %w", cert.Subject.CommonName, CACert, err)
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return fmt.Errorf("certificate %q is not for %s: %w", cert.Subject.CommonName, usageName(usage), err)
	}
	return fmt.Errorf("certificate %q does not verify: %w", cert.Subject.CommonName, err)
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "servers (node certificates)"
	case x509.ExtKeyUsageClientAuth:
		return "clients"
	}
	return fmt.Sprintf("usage %d", u)
}

// ClientNames lists the names of the client certificates in dir, sorted.
func ClientNames(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "client.*.crt"))
	if err != nil {
		return nil, fmt.Errorf("list client certificates: %w", err)
	}
	var names []string
	for _, m := range matches {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "client."), ".crt")
		if CheckName("client", name) == nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}
