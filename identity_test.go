package hearsay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay"
	"github.com/hearsaydb/hearsay/internal/certs"
)

// memoryIdentities returns identities for names under one in-memory CA.
func memoryIdentities(t testing.TB, seed uint64, names ...string) map[string]*hearsay.Identity {
	t.Helper()
	ca, err := certs.NewMemoryCA(seed, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*hearsay.Identity{}
	for _, name := range names {
		nd, err := ca.Node(name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = &hearsay.Identity{CA: nd.CA, Cert: nd.Cert, Key: nd.Key}
	}
	return out
}

func openSigned(t *testing.T, id *hearsay.Identity, dir string, seeds ...string) *hearsay.Node {
	t.Helper()
	return openNodeWith(t, "", dir, seeds, func(c *hearsay.Config) { c.Identity = id })
}

func TestSignedNodesReplicate(t *testing.T) {
	ctx := context.Background()
	ids := memoryIdentities(t, 1, "n1", "n2", "n3")
	n1 := openSigned(t, ids["n1"], t.TempDir())
	n2 := openSigned(t, ids["n2"], "", n1.Status().Address)
	n3 := openSigned(t, ids["n3"], t.TempDir(), n1.Status().Address)
	nodes := []*hearsay.Node{n1, n2, n3}
	for i, n := range nodes {
		st := n.Status()
		name := fmt.Sprintf("n%d", i+1)
		if st.Name != name || st.Signing != "ed25519" || st.NodeID != fmt.Sprintf("%016x", hearsay.NodeIDOf(name)) {
			t.Fatalf("status %+v: want name %s from the certificate, signing ed25519, node id %016x", st, name, hearsay.NodeIDOf(name))
		}
		waitFor(t, 10*time.Second, "membership", func() bool { return n.Status().Alive == 3 })
	}
	var vs []hearsay.Version
	for i, n := range nodes {
		v, err := n.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("signed"))
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	for _, n := range nodes {
		for i, v := range vs {
			waitFor(t, 10*time.Second, "replication", func() bool {
				e, err := n.Get(ctx, []byte(fmt.Sprintf("k%d", i)))
				return err == nil && e.Version == v
			})
		}
	}
}

// A data directory created without certificates holds a random node id;
// opened with an identity, whose id is derived from its name, it is
// refused with an error that says what to do.
func TestIdentityRefusesDataDirOfAnotherID(t *testing.T) {
	dir := t.TempDir()
	ids := memoryIdentities(t, 2, "n1")
	cfg := hearsay.DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.BindAddr = "n1", dir, "127.0.0.1:0"
	n, err := hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Identity = ids["n1"]
	_, err = hearsay.Open(cfg)
	if err == nil || !strings.Contains(err.Error(), "new data directory") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("open of an unsigned node's data dir with an identity: err %v", err)
	}
	// A name other than the certificate's is refused.
	cfg.DataDir, cfg.Name = t.TempDir(), "n2"
	if _, err = hearsay.Open(cfg); err == nil || !strings.Contains(err.Error(), "certificate's name") {
		t.Fatalf("open with another name than the certificate's: err %v", err)
	}
	// The same identity reopens its own data directory.
	cfg.Name = "n1"
	n, err = hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = n.Close()
	n, err = hearsay.Open(cfg)
	if err != nil {
		t.Fatalf("reopen of a certificate node's data dir: %v", err)
	}
	_ = n.Close()
}

// LoadIdentity reads a certs directory made by `hearsay cert`, and a node
// opened with it takes its name from the certificate.
func TestLoadIdentity(t *testing.T) {
	dir := t.TempDir()
	if _, err := certs.CreateCA(certs.Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.CreateNode(certs.Options{Dir: dir}, "n7", nil); err != nil {
		t.Fatal(err)
	}
	id, err := hearsay.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := hearsay.DefaultConfig()
	cfg.Identity, cfg.BindAddr = id, "127.0.0.1:0"
	n, err := hearsay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if st := n.Status(); st.Name != "n7" || st.Signing != "ed25519" {
		t.Fatalf("status %+v: want the certificate's name n7, signing ed25519", st)
	}
	if _, err := hearsay.LoadIdentity(t.TempDir()); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("LoadIdentity of an empty directory: err %v, want one naming ca.crt", err)
	}
}
