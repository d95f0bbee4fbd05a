package cluster_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/wire"
)

// certNodeDir makes a node's certs directory as in a deployment: the CA's
// certificate (not its key), node.crt for name and an admin client.
func certNodeDir(t *testing.T, ca, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(ca, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	caKey := filepath.Join(ca, "ca.key")
	mustHearsay(t, "cert", "create-node", "--certs-dir", dir, "--ca-key", caKey, "--name", name, "--host", "127.0.0.1")
	mustHearsay(t, "cert", "create-client", "--certs-dir", dir, "--ca-key", caKey, "--name", "admin", "--role", "admin")
	return dir
}

// certAgent starts an agent with the certs directory of name under ca.
func certAgent(t *testing.T, ca, name string, join ...string) *agent {
	t.Helper()
	dir := certNodeDir(t, ca, name)
	a := newAgent(t, name, join...)
	a.extra = []string{"--certs-dir", dir}
	a.https = httpsClient(t, dir, "admin")
	a.start()
	return a
}

// TestCertificateGossip runs a 3-agent cluster whose gossip is signed by
// node certificates. Strangers (no credentials; a certificate of another
// CA) cannot join, write, delete or inject members, and are told why; a
// forged datagram is refused. Then `hearsay cert revoke` expels a member:
// every honest member shows it revoked within a bound and refuses what it
// sends afterwards.
func TestCertificateGossip(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca")
	mustHearsay(t, "cert", "create-ca", "--certs-dir", ca)
	mustHearsay(t, "cert", "create-client", "--certs-dir", ca, "--name", "root", "--role", "admin")
	n1 := certAgent(t, ca, "n1")
	n2 := certAgent(t, ca, "n2", n1.gossip)
	n3 := certAgent(t, ca, "n3", n1.gossip)
	all := []*agent{n1, n2, n3}
	for _, a := range all {
		a.waitFor(20*time.Second, "3 alive members", func() bool { return allAlive(a, "n1", "n2", "n3") })
	}
	n1.put("greeting", "hello")
	for _, a := range all {
		a.waitFor(10*time.Second, "greeting", func() bool { v, ok := a.get("greeting"); return ok && v == "hello" })
	}

	// A stranger without credentials, and one with a node certificate of
	// another CA, both named like no member and both joining n1.
	plain := newAgent(t, "stranger", n1.gossip)
	plain.start()
	other := filepath.Join(t.TempDir(), "other-ca")
	mustHearsay(t, "cert", "create-ca", "--certs-dir", other)
	foreign := certAgent(t, other, "n4", n1.gossip)
	for _, s := range []struct {
		a     *agent
		cause string
	}{{plain, "no certificate"}, {foreign, "certificate signed by another ca"}} {
		s.a.waitFor(15*time.Second, "a join error naming "+s.cause, func() bool {
			st, ok := s.a.status()
			return ok && strings.Contains(strings.ToLower(st.LastJoinError), s.cause)
		})
		st, _ := s.a.status()
		t.Logf("%s: last_join_error %q", s.a.name, st.LastJoinError)
		if st.Joined {
			t.Errorf("%s joined", s.a.name)
		}
		s.a.put("injected-"+s.a.name, "x")
		if _, code, err := s.a.request("DELETE", "/v1/kv/greeting", nil); err != nil || code != 200 {
			t.Fatalf("%s: delete: %d %v", s.a.name, code, err)
		}
	}
	// A forged datagram: mail and a fake member, claiming to be n2.
	forged, err := wire.Marshal(&wire.Envelope{
		Cluster: "hearsay", From: "n2", FromAddr: n2.gossip,
		Members: []*wire.Member{{Name: "fake", Address: "127.0.0.1:9", State: wire.State_ALIVE, Incarnation: 9}},
		Body:    &wire.Envelope_Mail{Mail: &wire.Mail{Id: 1, Records: []*wire.Record{{Key: []byte("forged"), Value: []byte("x"), Hlc: uint64(time.Now().UnixMilli()) << 16, Node: 2}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", n1.gossip)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(forged); err != nil {
		t.Fatal(err)
	}
	c.Close()
	n1.waitFor(10*time.Second, "the forged frame refused", func() bool {
		return n1.metric(`hearsay_transport_rejected_frames_total{reason="auth"}`) >= 3
	})

	// An honest write after all that still replicates; nothing of the
	// strangers' did, and the greeting was not deleted.
	n2.put("marker", "m")
	for _, a := range all {
		a.waitFor(10*time.Second, "marker", func() bool { _, ok := a.get("marker"); return ok })
	}
	for _, a := range all {
		for _, k := range []string{"injected-stranger", "injected-n4", "forged"} {
			if _, ok := a.get(k); ok {
				t.Errorf("%s has %s", a.name, k)
			}
		}
		if v, ok := a.get("greeting"); !ok || v != "hello" {
			t.Errorf("%s: greeting %q %v, deleted by a stranger", a.name, v, ok)
		}
		ms := a.members()
		if len(ms) != 3 {
			t.Errorf("%s lists members %v, want n1, n2, n3", a.name, ms)
		}
	}
	// A client cannot write the reserved revocation keys.
	if b, code, _ := n1.request("PUT", "/v1/kv/%00hearsay%2Frevoked%2Fn2", []byte("x")); code != 400 || !strings.Contains(string(b), "reserved") {
		t.Errorf("PUT of a reserved key: %d %s, want 400", code, b)
	}

	// Revoke n3 through n1, with the CLI, while n2 is down: n2 learns it
	// when it is back.
	n2.kill()
	out := mustHearsay(t, "cert", "revoke", "--certs-dir", ca, "--cert-name", "root", "--name", "n3", "--addr", n1.http)
	t.Logf("cert revoke: %s", strings.TrimSpace(out))
	start := time.Now()
	n1.waitFor(10*time.Second, "n3 revoked", func() bool { return n1.members()["n3"].State == "revoked" })
	t.Logf("n3 revoked on n1 within %v", time.Since(start).Round(time.Millisecond))
	n2.start()
	start = time.Now()
	n2.waitFor(30*time.Second, "n3 revoked", func() bool { return n2.members()["n3"].State == "revoked" })
	t.Logf("n3 revoked on n2 within %v of its restart", time.Since(start).Round(time.Millisecond))
	if out := mustHearsay(t, "members", "--addr", n2.http, "--certs-dir", ca, "--cert-name", "root"); !strings.Contains(out, "revoked") {
		t.Errorf("hearsay members on n2 does not show revoked:\n%s", out)
	}
	if out := mustHearsay(t, "cert", "list", "--certs-dir", ca); !strings.Contains(out, "revoked.list") || !strings.Contains(out, "n3") {
		t.Errorf("cert list does not show the revocation:\n%s", out)
	}

	// n3's later writes are refused everywhere, and n3 is told why.
	n3.put("late", "n3")
	n1.put("marker2", "m")
	n2.waitFor(10*time.Second, "marker2", func() bool { _, ok := n2.get("marker2"); return ok })
	n3.waitFor(10*time.Second, "a refusal naming the revocation", func() bool {
		return len(n3.logLines("certificate revoked")) > 0
	})
	for _, a := range []*agent{n1, n2} {
		if _, ok := a.get("late"); ok {
			t.Errorf("%s took n3's write after its revocation", a.name)
		}
		if got := a.members()["n3"].State; got != "revoked" {
			t.Errorf("%s: n3 %q, want revoked", a.name, got)
		}
		// What honest members relay about a revoked one is not held
		// against them.
		if q := a.quarantined(); len(q) > 0 {
			t.Errorf("%s quarantines %v: no honest member may be", a.name, q)
		}
	}
}
