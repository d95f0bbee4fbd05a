package hearsay_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/internal/certs"
)

// certsFor makes a certs directory for node name, signed by the CA in
// caDir.
func certsFor(t testing.TB, caDir, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(caDir, certs.CACert))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, certs.CACert), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.CreateNode(certs.Options{Dir: dir, CAKeyFile: filepath.Join(caDir, certs.CAKey)}, name, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newCADir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := certs.CreateCA(certs.Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openCertNode(t *testing.T, certsDir, dataDir string, seeds ...string) *hearsay.Node {
	t.Helper()
	id, err := hearsay.LoadIdentity(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	return openNodeWith(t, "", dataDir, seeds, func(c *hearsay.Config) { c.Identity = id })
}

func memberState(n *hearsay.Node, name string) hearsay.MemberState {
	for _, m := range n.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// TestCertificateCluster: nodes with certificates of one CA gossip (their
// names come from their certificates); nodes with another CA's
// certificate, or none, cannot join and their writes never arrive, and the
// join error names the cause. Clients cannot write reserved keys. A
// revocation spreads to every member, which expels the node as revoked
// and drops what it sends; it survives a restart.
func TestCertificateCluster(t *testing.T) {
	ctx := context.Background()
	caDir := newCADir(t)
	data2 := t.TempDir()
	n1 := openCertNode(t, certsFor(t, caDir, "n1"), "")
	seed := n1.Status().Address
	n2dir := certsFor(t, caDir, "n2")
	n2 := openCertNode(t, n2dir, data2, seed)
	n3 := openCertNode(t, certsFor(t, caDir, "n3"), "", seed)
	for _, n := range []*hearsay.Node{n1, n2, n3} {
		waitFor(t, 10*time.Second, "certificate members", func() bool { return n.Status().Alive == 3 })
	}
	if got := n2.Status().Name; got != "n2" {
		t.Fatalf("name %q, want the certificate's n2", got)
	}

	// Strangers.
	otherCA := newCADir(t)
	for _, s := range []struct {
		name, reason string
		node         func() *hearsay.Node
	}{
		{"other CA", "certificate signed by another CA", func() *hearsay.Node { return openCertNode(t, certsFor(t, otherCA, "n9"), "") }},
		{"no certificate", "no certificate", func() *hearsay.Node { return openNode(t, "n8", "") }},
	} {
		x := s.node()
		jctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := x.Join(jctx, []string{seed})
		cancel()
		if err == nil {
			t.Fatalf("%s joined", s.name)
		}
		// Refusal notices are rate-limited: an attempt may end in "no
		// answer"; a later one names the cause.
		waitFor(t, 10*time.Second, s.name+" join error naming "+s.reason, func() bool {
			return strings.Contains(x.Status().LastJoinError, s.reason)
		})
		if _, err := x.Put(ctx, []byte("injected"), []byte(s.name)); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := n1.Put(ctx, []byte("\x00hearsay/revoked/n3"), []byte("x")); !errors.Is(err, hearsay.ErrReservedKey) {
		t.Fatalf("put of a reserved key: %v", err)
	}
	if _, err := n1.Delete(ctx, []byte("\x00hearsay/x")); !errors.Is(err, hearsay.ErrReservedKey) {
		t.Fatalf("delete of a reserved key: %v", err)
	}

	// A revocation signed by another CA is refused.
	otherKey, err := certs.LoadCAKey(otherCA, "")
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := certs.NewRevocation("n2", time.Now(), otherKey)
	if _, err := n1.Revoke(ctx, forged.Marshal()); !errors.Is(err, hearsay.ErrBadRevocation) {
		t.Fatalf("forged revocation: %v", err)
	}

	caKey, err := certs.LoadCAKey(caDir, "")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := certs.NewRevocation("n3", time.Now(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Revoke(ctx, rev.Marshal()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*hearsay.Node{n1, n2} {
		waitFor(t, 10*time.Second, "n3 revoked", func() bool { return memberState(n, "n3") == hearsay.StateRevoked })
		if at, ok := n.Revoked("n3"); !ok || !at.Equal(rev.At) {
			t.Fatalf("Revoked(n3) = %v %v, want %v", at, ok, rev.At)
		}
	}
	// n3's writes after the revocation never arrive; n1's do.
	if _, err := n3.Put(ctx, []byte("late"), []byte("n3")); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Put(ctx, []byte("marker"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "marker", func() bool { _, err := n2.Get(ctx, []byte("marker")); return err == nil })
	for _, n := range []*hearsay.Node{n1, n2} {
		for _, k := range []string{"late", "injected"} {
			if _, err := n.Get(ctx, []byte(k)); !errors.Is(err, hearsay.ErrNotFound) {
				t.Fatalf("%s has %q: %v", n.Status().Name, k, err)
			}
		}
		if got := n.Status().Alive; got != 2 {
			t.Fatalf("%s counts %d alive members, want 2", n.Status().Name, got)
		}
	}

	// The revocation persists: n2 knows it again at once after a restart.
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	n2 = openCertNode(t, n2dir, data2, seed)
	if got := memberState(n2, "n3"); got != hearsay.StateRevoked {
		t.Fatalf("after restart n3 is %q, want revoked", got)
	}
}

// TestClientRevocationSpreads: a client revocation written on one node
// reaches the others through gossip, survives a restart, is listed by
// Revocations apart from node revocations, and revokes no node of the same
// name.
func TestClientRevocationSpreads(t *testing.T) {
	ctx := context.Background()
	caDir := newCADir(t)
	data2 := t.TempDir()
	n1 := openCertNode(t, certsFor(t, caDir, "n1"), "")
	seed := n1.Status().Address
	n2dir := certsFor(t, caDir, "n2")
	n2 := openCertNode(t, n2dir, data2, seed)
	waitFor(t, 10*time.Second, "two members", func() bool { return n1.Status().Alive == 2 && n2.Status().Alive == 2 })
	key, err := certs.LoadCAKey(caDir, "")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := certs.NewClientRevocation("n2", time.Now(), key) // a client named like a node
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Revoke(ctx, rev.Marshal()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the client revocation on n2", func() bool { _, ok := n2.ClientRevoked("n2"); return ok })
	if _, ok := n1.Revoked("n2"); ok || memberState(n1, "n2") != hearsay.StateAlive {
		t.Fatalf("revoking client n2 revoked node n2 (%s)", memberState(n1, "n2"))
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	n2 = openCertNode(t, n2dir, data2, seed)
	if at, ok := n2.ClientRevoked("n2"); !ok || !at.Equal(rev.At) {
		t.Fatalf("after a restart: ClientRevoked(n2) = %v %v, want %v", at, ok, rev.At)
	}
	if got := n2.Revocations(); len(got) != 1 || !got[0].Client || got[0].Name != "n2" {
		t.Fatalf("Revocations() = %+v", got)
	}
	if _, err := n1.Put(ctx, []byte("\x00hearsay/revoked-client/x"), rev.Marshal()); !errors.Is(err, hearsay.ErrReservedKey) {
		t.Fatalf("Put of a client revocation key: %v, want ErrReservedKey", err)
	}
}
