package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newCluster makes a CA, a node certificate for n1 and one client per
// role in a new directory.
func newCluster(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	o := Options{Dir: dir}
	if _, err := CreateCA(o); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateNode(o, "n1", nil); err != nil {
		t.Fatal(err)
	}
	for r, name := range clientNames {
		if _, err := CreateClient(o, name, r); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// clientNames are the clients newCluster makes.
var clientNames = map[Role]string{RoleRead: "reader", RoleWrite: "writer", RoleAdmin: "adminer"}

func wantErr(t *testing.T, err error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", contains)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("error %q does not contain %q", err, c)
		}
	}
}

func TestCreateFilesAndModes(t *testing.T) {
	dir := newCluster(t)
	want := map[string]os.FileMode{
		CACert: CertMode, CAKey: KeyMode, NodeCert: CertMode, NodeKey: KeyMode,
		ClientCert("reader"): CertMode, ClientKey("reader"): KeyMode,
		ClientCert("writer"): CertMode, ClientKey("writer"): KeyMode,
		ClientCert("adminer"): CertMode, ClientKey("adminer"): KeyMode,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files %v, want %d (no temporary files left)", names, len(want))
	}
	for f, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", f, fi.Mode().Perm(), mode)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != DirMode {
		t.Errorf("directory mode %v, want %v", fi.Mode().Perm(), DirMode)
	}
}

func TestChainsVerifyAndRoles(t *testing.T) {
	dir := newCluster(t)
	now := time.Now()
	n, err := LoadNode(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "n1" {
		t.Errorf("node name %q, want n1", n.Name())
	}
	if !slices.Equal(n.Cert.DNSNames, []string{"localhost"}) || len(n.Cert.IPAddresses) != 2 {
		t.Errorf("default hosts: DNS %v, IPs %v", n.Cert.DNSNames, n.Cert.IPAddresses)
	}
	if err := n.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if r, err := RoleOf(n.Cert); err != nil || r != RoleNone {
		t.Errorf("node role %v %v, want none", r, err)
	}
	if d := n.CA.NotAfter.Sub(now); d < DefaultCAValidity-time.Minute || d > DefaultCAValidity {
		t.Errorf("CA valid for %v, want %v", d, DefaultCAValidity)
	}
	if d := n.Cert.NotAfter.Sub(now); d < DefaultCertValidity-time.Minute || d > DefaultCertValidity {
		t.Errorf("node valid for %v, want %v", d, DefaultCertValidity)
	}
	for r, name := range clientNames {
		p, err := LoadPair(dir, ClientCert(name), ClientKey(name), n.CA, x509.ExtKeyUsageClientAuth, now)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := RoleOf(p.Cert); err != nil || got != r {
			t.Errorf("%s: role %v %v, want %v", name, got, err, r)
		}
		if p.Cert.Subject.CommonName != name {
			t.Errorf("CN %q, want %q", p.Cert.Subject.CommonName, name)
		}
		// A client certificate is not a server's: a client cannot pose as
		// a node.
		err = Verify(p.Cert, n.CA, x509.ExtKeyUsageServerAuth, now)
		wantErr(t, err, "not for servers")
	}
	if _, err := ClientTLS(dir, "writer", now); err != nil {
		t.Fatal(err)
	}
}

func TestNodeHosts(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	if _, err := CreateCA(o); err != nil {
		t.Fatal(err)
	}
	c, err := CreateNode(o, "n2", []string{"n2.example.com", "10.0.0.2", "*.svc.local"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.DNSNames, []string{"n2.example.com", "*.svc.local"}) || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.2")) {
		t.Errorf("SANs: %v %v", c.DNSNames, c.IPAddresses)
	}
	o.Overwrite = true
	_, err = CreateNode(o, "n2", []string{"bad host"})
	wantErr(t, err, `--host "bad host"`, "not a DNS name")
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}

	_, err := CreateNode(o, "n1", nil)
	wantErr(t, err, "ca.crt", "hearsay cert create-ca --certs-dir "+dir)
	if _, err := os.Stat(filepath.Join(dir, NodeKey)); err == nil {
		t.Error("node.key written without a CA")
	}

	if _, err := CreateCA(o); err != nil {
		t.Fatal(err)
	}
	_, err = CreateCA(o)
	wantErr(t, err, "ca.crt exists", "--overwrite")

	for _, name := range []string{"", "../x", "a/b", ".hidden", "a b", strings.Repeat("x", 65), "é"} {
		_, err := CreateClient(o, name, RoleRead)
		wantErr(t, err, "client name")
	}
	_, err = CreateClient(o, "c", RoleNone)
	wantErr(t, err, "want read, write or admin")
	_, err = CreateClient(o, "c", RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	_, err = CreateClient(o, "c", RoleAdmin)
	wantErr(t, err, "client.c.crt exists")
	o.Overwrite = true
	c, err := CreateClient(o, "c", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := RoleOf(c); r != RoleAdmin {
		t.Errorf("overwritten role %v", r)
	}
	o.Overwrite = false

	// A certificate may not outlive its CA.
	o.Validity = 20 * 365 * 24 * time.Hour
	_, err = CreateClient(o, "long", RoleRead)
	wantErr(t, err, "outlive the CA")
	o.Validity = 0

	// The CA key elsewhere, and a key that is not the CA's.
	other := t.TempDir()
	if _, err := CreateCA(Options{Dir: other}); err != nil {
		t.Fatal(err)
	}
	_, err = CreateClient(Options{Dir: dir, CAKeyFile: filepath.Join(other, CAKey)}, "d", RoleRead)
	wantErr(t, err, "does not belong to")
	if err := os.Rename(filepath.Join(dir, CAKey), filepath.Join(other, "kept.key")); err != nil {
		t.Fatal(err)
	}
	_, err = CreateClient(o, "d", RoleRead)
	wantErr(t, err, "ca.key", "--ca-key")
	if _, err := CreateClient(Options{Dir: dir, CAKeyFile: filepath.Join(other, "kept.key")}, "d", RoleRead); err != nil {
		t.Fatal(err)
	}
}

func TestLoadNodeErrors(t *testing.T) {
	now := time.Now()
	t.Run("missing", func(t *testing.T) {
		dir := t.TempDir()
		_, err := LoadNode(dir, now)
		wantErr(t, err, "ca.crt")
		if _, err := CreateCA(Options{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		_, err = LoadNode(dir, now)
		wantErr(t, err, "node.crt")
	})
	t.Run("expired", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := CreateCA(Options{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		past := func() time.Time { return now.Add(-48 * time.Hour) }
		if _, err := CreateNode(Options{Dir: dir, Validity: time.Hour, Now: past}, "n1", nil); err != nil {
			t.Fatal(err)
		}
		_, err := LoadNode(dir, now)
		wantErr(t, err, "node.crt", "expired")
	})
	t.Run("other CA", func(t *testing.T) {
		dir, other := newCluster(t), newCluster(t)
		if err := os.Rename(filepath.Join(other, NodeCert), filepath.Join(dir, NodeCert)); err != nil {
			t.Fatal(err)
		}
		_, err := LoadNode(dir, now)
		wantErr(t, err, "node.crt", "node.key is not the key of")
		if err := os.Rename(filepath.Join(other, NodeKey), filepath.Join(dir, NodeKey)); err != nil {
			t.Fatal(err)
		}
		_, err = LoadNode(dir, now)
		wantErr(t, err, "node.crt", "not signed by this cluster's CA")
	})
	t.Run("client cert as node", func(t *testing.T) {
		dir := newCluster(t)
		for _, f := range [][2]string{{ClientCert("writer"), NodeCert}, {ClientKey("writer"), NodeKey}} {
			if err := os.Rename(filepath.Join(dir, f[0]), filepath.Join(dir, f[1])); err != nil {
				t.Fatal(err)
			}
		}
		_, err := LoadNode(dir, now)
		wantErr(t, err, "not for servers")
	})
	t.Run("wrong key type", func(t *testing.T) {
		dir := newCluster(t)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "n1"}, NotBefore: now, NotAfter: now.Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, NodeCert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = LoadNode(dir, now)
		wantErr(t, err, "node.crt", "wrong key type ECDSA")
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		if err := os.WriteFile(filepath.Join(dir, ClientKey("reader")), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = ClientTLS(dir, "reader", now)
		wantErr(t, err, "client.reader.key", "wrong key type")
	})
	t.Run("unreadable", func(t *testing.T) {
		dir := newCluster(t)
		if err := os.WriteFile(filepath.Join(dir, NodeKey), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadNode(dir, now)
		wantErr(t, err, "node.key", "no PEM data")
	})
}

func TestParseRole(t *testing.T) {
	for s, want := range map[string]Role{"read": RoleRead, "write": RoleWrite, "admin": RoleAdmin} {
		if r, err := ParseRole(s); err != nil || r != want || r.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Read", "root", "none", " read"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q): no error", s)
		}
	}
	cert := func(ous ...string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: "c", OrganizationalUnit: ous}}
	}
	if r, err := RoleOf(cert("team", "role:write")); err != nil || r != RoleWrite {
		t.Errorf("RoleOf = %v, %v", r, err)
	}
	if _, err := RoleOf(cert("role:read", "role:admin")); err == nil {
		t.Error("two roles: no error")
	}
	if _, err := RoleOf(cert("role:root")); err == nil {
		t.Error("unknown role: no error")
	}
}

func TestPickClient(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	if _, err := CreateCA(o); err != nil {
		t.Fatal(err)
	}
	_, err := PickClient(dir, "")
	wantErr(t, err, "no client certificate", "create-client")
	if _, err := CreateClient(o, "alice", RoleRead); err != nil {
		t.Fatal(err)
	}
	if n, err := PickClient(dir, ""); err != nil || n != "alice" {
		t.Errorf("the only one: %q %v", n, err)
	}
	if _, err := CreateClient(o, "bob", RoleRead); err != nil {
		t.Fatal(err)
	}
	_, err = PickClient(dir, "")
	wantErr(t, err, "alice, bob", "--cert-name")
	if _, err := CreateClient(o, "root", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if n, err := PickClient(dir, ""); err != nil || n != "root" {
		t.Errorf("root among many: %q %v", n, err)
	}
	if n, err := PickClient(dir, "bob"); err != nil || n != "bob" {
		t.Errorf("named: %q %v", n, err)
	}
	_, err = PickClient(dir, "../ca")
	wantErr(t, err, "client name")
}

func TestList(t *testing.T) {
	dir := newCluster(t)
	if err := os.Remove(filepath.Join(dir, ClientKey("reader"))); err != nil {
		t.Fatal(err)
	}
	infos, err := List(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range infos {
		got = append(got, i.Kind+":"+i.Name+":"+i.Role+":"+i.Problem)
	}
	want := []string{"ca:hearsay CA::", "node:n1::", "client:adminer:admin:", "client:reader:read:client.reader.key is missing", "client:writer:write:"}
	if !slices.Equal(got, want) {
		t.Errorf("List:\n got %q\nwant %q", got, want)
	}
	if _, err := List(filepath.Join(dir, "nope"), time.Now()); err == nil {
		t.Error("missing directory: no error")
	}
}

// FuzzParseRole checks that ParseRole accepts exactly the three role names
// and that RoleOf never grants a role its certificate does not name once.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{"read", "write", "admin", "", "role:admin", "ADMIN", "admin\x00"} {
		f.Add(s, "role:read")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		r, err := ParseRole(a)
		if (err == nil) != (a == "read" || a == "write" || a == "admin") {
			t.Fatalf("ParseRole(%q) = %v, %v", a, r, err)
		}
		if err == nil && r.String() != a {
			t.Fatalf("ParseRole(%q).String() = %q", a, r)
		}
		c := &x509.Certificate{Subject: pkix.Name{OrganizationalUnit: []string{a, b}}}
		role, err := RoleOf(c)
		if err != nil {
			return
		}
		if role != RoleNone && !slices.Contains(c.Subject.OrganizationalUnit, RolePrefix+role.String()) {
			t.Fatalf("RoleOf(%q) = %v, not named", c.Subject.OrganizationalUnit, role)
		}
	})
}

// FuzzParseCert feeds arbitrary files to the certificate and key parsers:
// they must not panic, and what they accept is Ed25519.
func FuzzParseCert(f *testing.F) {
	dir := f.TempDir()
	o := Options{Dir: dir}
	if _, err := CreateCA(o); err != nil {
		f.Fatal(err)
	}
	if _, err := CreateClient(o, "c", RoleWrite); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{CACert, CAKey, ClientCert("c"), ClientKey("c")} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseCert(data); err == nil {
			if _, err := RoleOf(c); err != nil && c.Subject.OrganizationalUnit == nil {
				t.Fatalf("RoleOf without units: %v", err)
			}
		}
		if k, err := ParseKey(data); err == nil && len(k) != 64 {
			t.Fatalf("key of %d bytes", len(k))
		}
	})
}
