package cluster_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// nodeCertsDirs makes a CA with `hearsay cert create-ca` and, for each
// name, a certs directory holding ca.crt (not the CA's key, as in a
// deployment), node.crt/node.key for that name and an admin client
// certificate.
// certStarter returns a function that starts an agent with its certs
// directory from dirs and an admin HTTPS client.
func certStarter(t *testing.T, dirs map[string]string) func(*agent) {
	return func(a *agent) {
		a.extra = []string{"--certs-dir", dirs[a.name]}
		a.https = httpsClient(t, dirs[a.name], "admin")
		a.start()
	}
}

// startHonestTrio starts n1, then n2 and n3 joining it, with start.
func startHonestTrio(t *testing.T, start func(*agent)) []*agent {
	n1 := newAgent(t, "n1")
	start(n1)
	n2, n3 := newAgent(t, "n2", n1.gossip), newAgent(t, "n3", n1.gossip)
	start(n2)
	start(n3)
	return []*agent{n1, n2, n3}
}

func nodeCertsDirs(t *testing.T, names ...string) map[string]string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca")
	mustHearsay(t, "cert", "create-ca", "--certs-dir", ca)
	data, err := os.ReadFile(filepath.Join(ca, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, name := range names {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca.crt"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		mustHearsay(t, "cert", "create-node", "--certs-dir", dir, "--ca-key", filepath.Join(ca, "ca.key"), "--name", name, "--host", "127.0.0.1")
		mustHearsay(t, "cert", "create-client", "--certs-dir", dir, "--ca-key", filepath.Join(ca, "ca.key"), "--name", "admin", "--role", "admin")
		dirs[name] = dir
	}
	return dirs
}

// TestSignedRecordsRefuseAForger runs three agents with certs directories
// (a certificate cluster: records signed by their origin, verified by
// every receiver) and a fourth with a valid certificate of the same CA
// whose binary alters the signature of every record it sends
// (HEARSAY_FAULT_FORGE_SIGNATURES in a faultinject build). Honest writes
// replicate; the forger's never reach an honest node, which counts each
// refusal and the offence, and quarantines the forger.
func TestSignedRecordsRefuseAForger(t *testing.T) {
	dirs := nodeCertsDirs(t, "n1", "n2", "n3", "forger")
	start := certStarter(t, dirs)
	honest := startHonestTrio(t, start)
	n1, n2 := honest[0], honest[1]
	for _, a := range honest {
		a.waitFor(20*time.Second, "three alive", func() bool {
			ms := a.members()
			return ms["n1"].State == "alive" && ms["n2"].State == "alive" && ms["n3"].State == "alive"
		})
	}
	for i, a := range honest {
		if b, code, err := a.request("GET", "/v1/status", nil); err != nil || code != 200 || !bytes.Contains(b, []byte(`"signing":"ed25519"`)) {
			t.Fatalf("%s status: %d %v %s", a.name, code, err, b)
		}
		a.put(fmt.Sprintf("honest-%d", i), "signed")
	}
	for _, a := range honest {
		for i := range honest {
			a.waitFor(20*time.Second, "honest writes replicated", func() bool {
				v, ok := a.get(fmt.Sprintf("honest-%d", i))
				return ok && v == "signed"
			})
		}
		if v := a.metric("hearsay_certificates"); v != 3 {
			t.Errorf("%s holds %v certificates, want 3", a.name, v)
		}
		if v := a.metric(`hearsay_records_refused_total{reason="signature"}`); v != 0 {
			t.Errorf("%s refused %v honest records for their signature", a.name, v)
		}
	}

	forger := newAgent(t, "forger", n1.gossip)
	forger.bin, forger.env = faultAgentBinary(t), []string{"HEARSAY_FAULT_FORGE_SIGNATURES=1"}
	start(forger)
	for _, a := range honest {
		a.waitFor(20*time.Second, "the forger alive", func() bool { return a.members()["forger"].State == "alive" })
	}
	forger.put("forged", "by the forger")
	if v, ok := forger.get("forged"); !ok || v != "by the forger" {
		t.Fatalf("the forger does not hold its own write: %q", v)
	}
	for _, a := range honest {
		a.waitFor(20*time.Second, "the forger's records refused", func() bool {
			return a.metric(`hearsay_records_refused_total{reason="signature"}`) > 0 &&
				a.metric(`hearsay_offences_total{kind="signature"}`) > 0
		})
	}
	// A bad signature weighs a quarter of the quarantine threshold: a few
	// more forged writes and every honest node quarantines the forger.
	for i := range 6 {
		forger.put(fmt.Sprintf("forged-%d", i), "by the forger")
	}
	for _, a := range honest {
		a.waitFor(30*time.Second, "the forger quarantined", func() bool { return a.quarantined()["forger"] })
		if q := a.quarantined(); len(q) != 1 {
			t.Errorf("%s quarantines %v, want the forger alone", a.name, q)
		}
	}
	// Honest writes still replicate, the forger's certificate is held, and
	// its write is on no honest node.
	n2.put("after", "still signed")
	for _, a := range honest {
		a.waitFor(20*time.Second, "a later honest write replicated", func() bool {
			v, ok := a.get("after")
			return ok && v == "still signed"
		})
		if v, ok := a.get("forged"); ok {
			t.Errorf("%s holds the forger's record: %q", a.name, v)
		}
		if v := a.metric("hearsay_certificates"); v != 4 {
			t.Errorf("%s holds %v certificates, want 4", a.name, v)
		}
	}
}
