package agent

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/internal/certs"
)

// TestRevocationRoute: POST /v1/revocations takes an admin client's
// CA-signed revocation and answers with its name and time; it refuses
// lower roles (403), malformed bodies, forged revocations and the node's
// own name (400); reserved keys cannot be written through the key routes.
func TestRevocationRoute(t *testing.T) {
	dir := testCerts(t)
	a := runTLSAgent(t, dir)
	url := "https://" + a.HTTPAddr() + "/v1/revocations"
	key, err := certs.LoadCAKey(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	body := func(name string, k []byte) string {
		r, err := certs.NewRevocation(name, time.Now(), k)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"revocation": %q}`, base64.StdEncoding.EncodeToString(r.Marshal()))
	}
	other := testCerts(t)
	otherKey, _ := certs.LoadCAKey(other, "")
	admin, writer := tlsClient(t, dir, "admin"), tlsClient(t, dir, "writer")
	for _, c := range []struct {
		name, body string
		admin      bool
		code       int
		says       string
	}{
		{"writer", body("n2", key), false, 403, "admin"},
		{"not JSON", "revoke n2", true, 400, "revocation"},
		{"not base64", `{"revocation": "%%%"}`, true, 400, "base64"},
		{"not a revocation", `{"revocation": "aGVsbG8="}`, true, 400, "invalid revocation"},
		{"another CA", body("n2", otherKey), true, 400, "not signed by this cluster's CA"},
		{"self", body("n1", key), true, 400, "this node"},
		{"ok", body("n2", key), true, 200, `"name":"n2"`},
	} {
		cl := writer
		if c.admin {
			cl = admin
		}
		r, err := call(t, cl, "POST", url, c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.code != c.code || !strings.Contains(string(r.body), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.code, r.body, c.code, c.says)
		}
	}
	if at, ok := a.Node().Revoked("n2"); !ok || at.IsZero() {
		t.Fatalf("n2 not revoked: %v %v", at, ok)
	}
	r, err := call(t, admin, "DELETE", "https://"+a.HTTPAddr()+"/v1/kv/%00hearsay%2Frevoked%2Fn2", "")
	if err != nil || r.code != 400 || !strings.Contains(string(r.body), "reserved key") {
		t.Fatalf("delete of a revocation: %d %s %v", r.code, r.body, err)
	}
}

// TestClientRevocation: a client certificate works, is revoked through
// POST /v1/revocations, and is then refused with a 401 naming the
// revocation, on the keep-alive connection it already had open too; the
// revocation is listed by GET /v1/revocations and counted; other clients
// are untouched, and a node named like the client is not revoked.
func TestClientRevocation(t *testing.T) {
	dir := testCerts(t)
	a := runTLSAgent(t, dir)
	base := "https://" + a.HTTPAddr()
	key, err := certs.LoadCAKey(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	writer, admin := tlsClient(t, dir, "writer"), tlsClient(t, dir, "admin")
	if r, err := call(t, writer, "PUT", base+"/v1/kv/k", "v"); err != nil || r.code != 200 {
		t.Fatalf("put before the revocation: %v %d %s", err, r.code, r.body)
	}
	rev, err := certs.NewClientRevocation("writer", time.Now(), key)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"revocation": %q}`, base64.StdEncoding.EncodeToString(rev.Marshal()))
	r, err := call(t, admin, "POST", base+"/v1/revocations", body)
	if err != nil || r.code != 200 || !strings.Contains(string(r.body), `"client":true`) {
		t.Fatalf("revoke: %v %d %s", err, r.code, r.body)
	}
	// The same client, whose connection is still open (keep-alive).
	r, err = call(t, writer, "PUT", base+"/v1/kv/k", "v2")
	if err != nil || r.code != 401 || !strings.Contains(string(r.body), `client certificate \"writer\" is revoked`) {
		t.Fatalf("put after the revocation: %v %d %s", err, r.code, r.body)
	}
	r, err = call(t, writer, "GET", base+"/v1/kv/k", "")
	if err != nil || r.code != 401 {
		t.Fatalf("get after the revocation: %v %d %s", err, r.code, r.body)
	}
	if r, err := call(t, tlsClient(t, dir, "reader"), "GET", base+"/v1/kv/k", ""); err != nil || r.code != 200 || !strings.Contains(string(r.body), `"value":"dg=="`) {
		t.Fatalf("another client: %v %d %s", err, r.code, r.body)
	}
	r, err = call(t, tlsClient(t, dir, "reader"), "GET", base+"/v1/revocations", "")
	var list RevocationsResponse
	if err != nil || r.code != 200 || json.Unmarshal(r.body, &list) != nil || len(list.Clients) != 1 || list.Clients[0].Name != "writer" || len(list.Nodes) != 0 {
		t.Fatalf("GET /v1/revocations: %v %d %s", err, r.code, r.body)
	}
	if _, ok := a.Node().Revoked("writer"); ok {
		t.Fatal("revoking client writer revoked a node named writer")
	}
	r, err = call(t, admin, "GET", base+"/metrics", "")
	if err != nil || !strings.Contains(string(r.body), `hearsay_http_auth_refused_total{reason="revoked"} 2`) ||
		!strings.Contains(string(r.body), "hearsay_revoked_clients 1") {
		t.Fatalf("metrics: %v %s", err, r.body)
	}
}
