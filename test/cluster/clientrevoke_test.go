package cluster_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientRevocationRefusedEverywhere (issue 11: client certificates
// can be revoked) on real processes: a client certificate works on both
// agents of a certificate cluster, is revoked through one of them with
// `hearsay cert revoke --client`, and is then refused (401 naming the
// revocation) by both, on the keep-alive connections it had open; an agent
// started after the revocation refuses it too, and lists it in GET
// /v1/revocations. Other clients are untouched.
func TestClientRevocationRefusedEverywhere(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca")
	mustHearsay(t, "cert", "create-ca", "--certs-dir", ca)
	mustHearsay(t, "cert", "create-client", "--certs-dir", ca, "--name", "root", "--role", "admin")
	mustHearsay(t, "cert", "create-client", "--certs-dir", ca, "--name", "leaked", "--role", "write")
	n1 := certAgent(t, ca, "n1")
	n2 := certAgent(t, ca, "n2", n1.gossip)
	for _, a := range []*agent{n1, n2} {
		a.waitFor(20*time.Second, "2 alive members", func() bool { return allAlive(a, "n1", "n2") })
	}
	// One client (one pool of keep-alive connections) for the leaked
	// certificate, used before and after the revocation.
	leaked := httpsClient(t, ca, "leaked")
	var reused bool // whether the last request went on a connection opened before
	trace := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	do := func(a *agent, method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(trace, method, "https://"+a.http+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := leaked.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, a := range []*agent{n1, n2} {
		if code, body := do(a, "PUT", "/v1/kv/by-leaked-"+a.name, "x"); code != 200 {
			t.Fatalf("%s: put with the client certificate before its revocation: %d %s", a.name, code, body)
		}
	}

	out := mustHearsay(t, "cert", "revoke", "--certs-dir", ca, "--cert-name", "root", "--client", "leaked", "--addr", n1.http)
	t.Logf("cert revoke: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "revoked client leaked") {
		t.Fatalf("cert revoke says %q", out)
	}
	refused := func(a *agent) func() bool {
		return func() bool {
			code, body := do(a, "GET", "/v1/kv/by-leaked-n1", "")
			return code == 401 && strings.Contains(body, `client certificate \"leaked\" is revoked`)
		}
	}
	start := time.Now()
	for _, a := range []*agent{n1, n2} {
		a.waitFor(20*time.Second, "the leaked client refused", refused(a))
		if !reused {
			t.Errorf("%s: the refused request did not go on the keep-alive connection opened before the revocation", a.name)
		}
		t.Logf("%s refuses the leaked client %v after the revocation", a.name, time.Since(start).Round(time.Millisecond))
		if code, body := do(a, "PUT", "/v1/kv/after", "x"); code != 401 {
			t.Errorf("%s: put with the revoked certificate: %d %s", a.name, code, body)
		}
		if _, ok := a.get("by-leaked-" + a.name); !ok {
			t.Errorf("%s: the admin client cannot read what the leaked one wrote before", a.name)
		}
	}

	// An agent started after the revocation learns it from its peers.
	n3 := certAgent(t, ca, "n3", n1.gossip)
	start = time.Now()
	n3.waitFor(30*time.Second, "the leaked client refused by n3", refused(n3))
	t.Logf("n3 refuses the leaked client %v after its start", time.Since(start).Round(time.Millisecond))
	b, code, err := n3.request("GET", "/v1/revocations", nil)
	var list struct {
		Nodes   []struct{ Name string } `json:"nodes"`
		Clients []struct{ Name string } `json:"clients"`
	}
	if err != nil || code != 200 || json.Unmarshal(b, &list) != nil || len(list.Clients) != 1 || list.Clients[0].Name != "leaked" || len(list.Nodes) != 0 {
		t.Fatalf("GET /v1/revocations on n3: %d %v %s", code, err, b)
	}
	if v := n3.metric(`hearsay_http_auth_refused_total{reason="revoked"}`); v < 1 {
		t.Errorf("n3: hearsay_http_auth_refused_total{reason=\"revoked\"} = %v", v)
	}
	if out := mustHearsay(t, "cert", "list", "--certs-dir", ca); !strings.Contains(out, "client revocation") || !strings.Contains(out, "leaked") {
		t.Errorf("cert list does not show the client revocation:\n%s", out)
	}
}
