package cluster_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hearsay runs the CLI to completion and returns its combined output.
func hearsay(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = cleanEnviron()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cleanEnviron is the environment without HEARSAY_ variables.
func cleanEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HEARSAY_") {
			env = append(env, kv)
		}
	}
	return env
}

func mustHearsay(t *testing.T, args ...string) string {
	t.Helper()
	out, err := hearsay(t, args...)
	if err != nil {
		t.Fatalf("hearsay %q: %v\n%s", args, err, out)
	}
	return out
}

// httpsClient trusts dir's ca.crt and presents client.NAME.crt ("": none),
// loaded with the standard library alone.
func httpsClient(t *testing.T, dir, name string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.crt holds no certificate")
	}
	tc := &tls.Config{RootCAs: pool}
	if name != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "client."+name+".crt"), filepath.Join(dir, "client."+name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// TestCertificates runs agents with certs directories made by `hearsay
// cert`, and the CLI against them: HTTPS with client certificates, roles
// enforced, node names from certificates, gossip between them.
func TestCertificates(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca")
	mustHearsay(t, "cert", "create-ca", "--certs-dir", ca)
	// One certs directory per node, with the CA's certificate and not its
	// key, as in a deployment.
	nodeDir := func(name string) string {
		dir := certNodeDir(t, ca, name) // ca.crt, node.crt and an admin client
		for _, c := range [][2]string{{"writer", "write"}, {"reader", "read"}} {
			mustHearsay(t, "cert", "create-client", "--certs-dir", dir, "--ca-key", filepath.Join(ca, "ca.key"), "--name", c[0], "--role", c[1])
		}
		return dir
	}
	d1, d2 := nodeDir("n1"), nodeDir("n2")

	n1 := newAgent(t, "n1")
	n1.extra = []string{"--certs-dir", d1}
	n1.https = httpsClient(t, d1, "admin")
	n1.start()
	n2 := newAgent(t, "n2", n1.gossip)
	n2.extra = []string{"--certs-dir", d2}
	n2.https = httpsClient(t, d2, "admin")
	n2.start()
	n1.waitFor(20*time.Second, "n2 alive in n1's view", func() bool { return n1.members()["n2"].State == "alive" })

	cli := func(dir, name string, args ...string) (string, error) {
		return hearsay(t, append(args, "--addr", n1.http, "--certs-dir", dir, "--cert-name", name)...)
	}
	if out, err := cli(d1, "writer", "put", "greeting", "hello"); err != nil || !strings.HasPrefix(out, "OK") {
		t.Fatalf("put as writer: %v %s", err, out)
	}
	if out, err := cli(d1, "reader", "get", "greeting"); err != nil || out != "hello" {
		t.Fatalf("get as reader: %v %q", err, out)
	}
	n2.waitFor(20*time.Second, "greeting replicated to n2", func() bool { v, ok := n2.get("greeting"); return ok && v == "hello" })

	// A read-role certificate cannot write: 403, and the CLI says why.
	out, err := cli(d1, "reader", "put", "greeting", "bye")
	if err == nil || !strings.Contains(out, `client "reader" has role read`) || !strings.Contains(out, "needs role write") {
		t.Fatalf("put as reader: %v %s", err, out)
	}
	// The CLI of n2's directory works against n1: same CA.
	if out, err := cli(d2, "reader", "get", "greeting"); err != nil || out != "hello" {
		t.Fatalf("get with n2's reader certificate: %v %q", err, out)
	}

	// HTTP without a certificate is refused, except the health probes.
	anon := httpsClient(t, d1, "")
	for path, want := range map[string]int{"/v1/kv/greeting": 401, "/v1/status": 401, "/metrics": 401, "/v1/health/live": 200, "/v1/health/ready": 200} {
		resp, err := anon.Get("https://" + n1.http + path)
		if err != nil {
			t.Fatalf("GET %s without a certificate: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a certificate: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + n1.http + "/v1/kv/greeting")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the HTTPS API: %d, want 400", resp.StatusCode)
	}
	if v := n1.metric(`hearsay_http_auth_refused_total{reason="no_certificate"}`); v != 3 {
		t.Errorf("refused no_certificate = %v, want 3", v)
	}
	if v := n1.metric(`hearsay_http_auth_refused_total{reason="role"}`); v != 1 {
		t.Errorf("refused role = %v, want 1", v)
	}
	if v, ok := n1.get("greeting"); !ok || v != "hello" {
		t.Errorf("greeting = %q after the refused write", v)
	}

	// A node's name is its certificate's: another --name is refused.
	out, err = hearsay(t, "agent", "--certs-dir", d1, "--name", "n9", "--in-memory", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, `differs from the name in`) {
		t.Errorf("agent with another name than its certificate's: %v %s", err, out)
	}
}
